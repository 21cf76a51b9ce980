"""Mixer properties against a plain-Python reference: routing honoured, never hearing oneself, clipping."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

import bridgeline.media.mixer as mixer_module
from bridgeline.media.mixer import FRAME_SAMPLES, Mixer, all_minus_self, mix_minus, mix_routed

F = 8  # the properties do not depend on the frame length; short frames keep the reference fast
samples = st.integers(-32768, 32767) | st.sampled_from([-32768, 32767])  # extremes exercise clipping


def reference(
    frames: Mapping[str, NDArray[np.int16]], routes: Mapping[str, Collection[str]], n: int
) -> dict[str, list[int]]:
    out = {}
    for listener, heard in routes.items():
        acc = [0] * n
        for source in heard:
            if source != listener and source in frames:
                acc = [a + int(x) for a, x in zip(acc, frames[source], strict=True)]
        out[listener] = [max(-32768, min(32767, a)) for a in acc]
    return out


@st.composite
def conferences(draw: st.DrawFn) -> tuple[dict[str, NDArray[np.int16]], dict[str, set[str]], list[str]]:
    members = [f"m{i}" for i in range(draw(st.integers(1, 8)))]
    music = [f"music{i}" for i in range(draw(st.integers(0, 2)))]
    sources = members + music
    frames = {s: draw(hnp.arrays(np.int16, F, elements=samples)) for s in sources}
    for silent in draw(st.lists(st.sampled_from(sources), max_size=2)) if sources else ():
        frames.pop(silent, None)  # no frame this tick: the source is silent
    listeners = members + [f"muted{i}" for i in range(draw(st.integers(0, 2)))]
    if draw(st.booleans()):  # start from a plain conference and override some listeners
        routes = all_minus_self(members, [x for x in listeners if x not in members])
        for lis in draw(st.lists(st.sampled_from(listeners), max_size=3)):
            routes[lis] = set(draw(st.lists(st.sampled_from([*sources, "ghost"]), max_size=4)))
    else:
        routes = {lis: set(draw(st.lists(st.sampled_from(sources), max_size=6))) for lis in listeners}
    return frames, routes, sources


@given(conferences())
def test_mixer_matches_reference(
    conf: tuple[dict[str, NDArray[np.int16]], dict[str, set[str]], list[str]],
) -> None:
    frames, routes, sources = conf
    mixer: Mixer[str] = Mixer(frame_samples=F)
    mixer.configure(sources, routes)
    out = mixer.mix(frames)
    assert set(out) == set(routes)
    expected = reference(frames, routes, F)
    assert {k: v.tolist() for k, v in out.items()} == expected


@given(conferences(), st.data())
def test_listener_never_hears_itself_and_unrouted_sources_are_absent(
    conf: tuple[dict[str, NDArray[np.int16]], dict[str, set[str]], list[str]], data: st.DataObject
) -> None:
    frames, routes, sources = conf
    mixer: Mixer[str] = Mixer(frame_samples=F)
    mixer.configure(sources, routes)
    before = {k: v.copy() for k, v in mixer.mix(frames).items()}
    changed = data.draw(st.sampled_from(sources))
    silent = np.zeros(F, dtype=np.int16)  # a silent source starts speaking
    frames[changed] = (frames.get(changed, silent).astype(np.int32) ^ 0x5A5A).astype(np.int16)
    after = mixer.mix(frames)
    for listener, heard in routes.items():
        if changed == listener or changed not in heard:
            assert (after[listener] == before[listener]).all(), (listener, changed)


@given(hnp.arrays(np.int16, st.tuples(st.integers(1, 12), st.just(F)), elements=samples))
def test_fast_path_equals_general_path(frames: NDArray[np.int16]) -> None:
    n = frames.shape[0]
    routing = np.ones((n, n), dtype=np.int8) - np.eye(n, dtype=np.int8)
    assert (mix_minus(frames) == mix_routed(frames, routing)).all()
    keys = [str(i) for i in range(n)]
    fast: Mixer[str] = Mixer(frame_samples=F)
    fast.configure(keys, all_minus_self(keys))
    slow: Mixer[str] = Mixer(frame_samples=F)  # every listener in its own general-path row
    slow.configure(keys, {k: set(keys) - {k} - {keys[(i + 1) % n]} for i, k in enumerate(keys)})
    for i, k in enumerate(keys):
        fast.inputs[fast.source_row[k]] = frames[i]
    out = fast.mix_inputs()
    assert fast.uses_fast_path == (n >= 2)
    assert (np.stack([out[fast.output_row[k]] for k in keys]) == mix_minus(frames)).all()
    assert not slow.uses_fast_path


def test_hold_transfer_and_music_routing() -> None:
    rng = np.random.default_rng(5)
    members = ["alice", "bob", "carol", "dave", "erin", "frank"]
    frames = {k: rng.integers(-3000, 3000, FRAME_SAMPLES, dtype=np.int16) for k in [*members, "moh"]}
    routes = all_minus_self(["alice", "bob", "carol"])
    routes["dave"] = {"erin"}  # warm-transfer consultation: dave and erin hear only each other
    routes["erin"] = {"dave"}
    routes["frank"] = {"moh"}  # on hold: music only, and nobody hears frank
    mixer: Mixer[str] = Mixer()
    mixer.configure([*members, "moh"], routes)
    out = mixer.mix(frames)
    assert mixer.uses_fast_path and set(out) == set(routes)
    assert (out["dave"] == frames["erin"]).all() and (out["erin"] == frames["dave"]).all()
    assert (out["alice"] == frames["bob"] + frames["carol"]).all()
    assert (out["frank"] == frames["moh"]).all()
    routes["carol"] = {"moh"}  # carol goes on hold too: she shares frank's output row
    routes["alice"] = {"bob"}
    routes["bob"] = {"alice"}
    mixer.configure([*members, "moh"], routes)
    out = mixer.mix(frames)
    assert (out["carol"] == frames["moh"]).all() and mixer.output_row["carol"] == mixer.output_row["frank"]
    assert (out["alice"] == frames["bob"]).all() and (out["bob"] == frames["alice"]).all()


def test_muted_member_hears_everyone_and_missing_frames_are_silence() -> None:
    mixer: Mixer[str] = Mixer(frame_samples=4)
    mixer.configure(["a", "b"], all_minus_self(["a", "b"], extra_listeners=["muted", "coach"]))
    out = mixer.mix({"a": np.full(4, 100, np.int16), "b": None})
    assert out["muted"].tolist() == [100] * 4 and out["b"].tolist() == [100] * 4
    assert out["a"].tolist() == [0] * 4


def test_saturation() -> None:
    frames = np.array([[30000, -30000], [30000, -30000], [30000, -30000]], dtype=np.int16)
    assert mix_minus(frames).tolist() == [[32767, -32768]] * 3
    assert mix_routed(frames, np.ones((1, 3))).tolist() == [[32767, -32768]]


@pytest.mark.parametrize("n", [3, 511, 600])
def test_routed_sums_are_exact_for_many_sources(n: int) -> None:
    rng = np.random.default_rng(n)
    frames = rng.integers(-32768, 32768, (n, 64), dtype=np.int16)
    frames[: n // 2, :32] = 32767  # large partial sums, where float rounding would show
    routing = rng.integers(0, 2, (5, n))
    exact = np.clip(routing.astype(np.int64) @ frames.astype(np.int64), -32768, 32767)
    assert (mix_routed(frames, routing) == exact).all()
    mixer: Mixer[int] = Mixer(frame_samples=64)
    mixer.configure(list(range(n)), {-1 - r: set(np.flatnonzero(routing[r]).tolist()) for r in range(5)})
    for s in range(n):
        mixer.inputs[mixer.source_row[s]] = frames[s]
    out = mixer.mix_inputs()
    assert all((out[mixer.output_row[-1 - r]] == exact[r]).all() for r in range(5))


# Every kernel the Mixer can choose, checked through mix_inputs() (the engine's way) against the reference.


def mix_via_inputs(mixer: Mixer[str], frames: Mapping[str, NDArray[np.int16]]) -> dict[str, list[int]]:
    mixer.inputs.fill(0)
    for key, frame in frames.items():
        mixer.inputs[mixer.source_row[key]] = frame
    out = mixer.mix_inputs()
    return {lis: out[row].tolist() for lis, row in mixer.output_row.items()}


frame_sets = st.one_of(
    hnp.arrays(np.int16, F, elements=samples),
    st.sampled_from([-32768, 32767, 0]).map(lambda v: np.full(F, v, dtype=np.int16)),  # extremes, silence
)


@given(st.integers(1, 12), st.data())
def test_plain_conference_kernel(n: int, data: st.DataObject) -> None:
    keys = [f"m{i}" for i in range(n)]
    frames = {k: data.draw(frame_sets) for k in keys}
    routes = all_minus_self(keys)
    mixer: Mixer[str] = Mixer(frame_samples=F)
    mixer.configure(keys, routes)
    assert mixer.kernel == ("mix-minus" if n >= 3 else "gather")  # N = 1: silence; N = 2: a swap
    assert mix_via_inputs(mixer, frames) == reference(frames, routes, F)


@given(st.integers(1, 6), st.integers(0, 2), st.data())
def test_one_source_routes_take_the_gather_kernel(members: int, music: int, data: st.DataObject) -> None:
    """Two-party calls, hold music, consultations, waiting alone: nobody hears more than one source."""
    sources = [f"m{i}" for i in range(members)] + [f"music{i}" for i in range(music)]
    frames = {s: data.draw(frame_sets) for s in sources}
    listeners = [f"m{i}" for i in range(members)] + ["muted"]
    routes = {
        lis: set(data.draw(st.lists(st.sampled_from([*sources, "ghost"]), max_size=1))) for lis in listeners
    }
    mixer: Mixer[str] = Mixer(frame_samples=F)
    mixer.configure(sources, routes)
    assert mixer.kernel == "gather"
    assert mix_via_inputs(mixer, frames) == reference(frames, routes, F)


@given(st.integers(4, 8), st.data())
def test_partial_routing_takes_the_general_kernel(n: int, data: st.DataObject) -> None:
    keys = [f"m{i}" for i in range(n)]
    frames = {k: data.draw(frame_sets) for k in keys}
    routes = all_minus_self(keys)
    held = data.draw(st.sampled_from(keys))
    routes[held] = set()  # on hold without music
    for lis in keys:
        routes[lis].discard(held)
    routes[data.draw(st.sampled_from(keys))] = set(keys[:2])  # one listener hears only two members
    mixer: Mixer[str] = Mixer(frame_samples=F)
    mixer.configure(keys, routes)
    assert mixer.kernel == "general"
    assert mix_via_inputs(mixer, frames) == reference(frames, routes, F)


@given(hnp.arrays(np.int16, st.tuples(st.integers(1, 12), st.just(F)), elements=samples))
def test_saturation_without_the_clip_ufunc(frames: NDArray[np.int16]) -> None:
    """The fallback for a numpy without the clip ufunc (minimum, then maximum) saturates the same."""
    expected = mix_minus(frames).tolist()
    saved, mixer_module._CLIP = mixer_module._CLIP, None
    try:
        assert mix_minus(frames).tolist() == expected
    finally:
        mixer_module._CLIP = saved
    wide = frames.astype(np.int64)
    assert expected == np.clip(wide.sum(axis=0) - wide, -32768, 32767).tolist()


@pytest.mark.parametrize("n", [2, 3, 10, 100])
@pytest.mark.parametrize("value", [-32768, 32767])
def test_full_scale_conference_saturates(n: int, value: int) -> None:
    mixer: Mixer[int] = Mixer()
    mixer.configure(range(n), all_minus_self(range(n)))  # type: ignore[arg-type]
    mixer.inputs[:] = value
    want = max(-32768, min(32767, value * (n - 1)))
    assert (mixer.mix_inputs() == want).all()


def test_output_buffer_contract() -> None:
    """The output is one buffer per Mixer, rewritten by each mix_inputs() but not by writes to inputs."""
    for n in (2, 3):
        mixer: Mixer[int] = Mixer(frame_samples=4)
        mixer.configure([0, 1, 2][:n], all_minus_self([0, 1, 2][:n]))
        mixer.inputs[:] = 7
        first = mixer.mix_inputs()
        held = first.copy()
        mixer.inputs[:] = 100  # the next tick's frames arrive before the output is encoded
        assert (first == held).all()
        assert mixer.mix_inputs() is first and (first == 100 * (n - 1)).all()


def test_empty_mixer() -> None:
    mixer: Mixer[str] = Mixer()
    assert mixer.kernel == "gather" and mixer.mix_inputs().shape == (0, FRAME_SAMPLES)
    assert mixer.mix({"nobody": None}) == {}
