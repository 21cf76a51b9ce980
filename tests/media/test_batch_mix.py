"""MixMinusBatch against the per-conference Mixer: same samples, conferences never leak into each other."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

from bridgeline.media import g711
from bridgeline.media.batch_mix import MixMinusBatch, encode_rows
from bridgeline.media.mixer import FRAME_SAMPLES, Mixer, all_minus_self

samples = st.integers(-32768, 32767) | st.sampled_from([-32768, 32767])  # extremes exercise clipping


@given(
    st.integers(1, 4).flatmap(
        lambda k: st.integers(1, 6).flatmap(
            lambda n: hnp.arrays(np.int16, (k, n, FRAME_SAMPLES), elements=samples)
        )
    )
)
def test_batch_equals_one_mixer_per_conference(frames: NDArray[np.int16]) -> None:
    k, n, _ = frames.shape
    batch = MixMinusBatch(k, n)
    batch.inputs[...] = frames.reshape(k * n, FRAME_SAMPLES)
    out = batch.mix().reshape(k, n, FRAME_SAMPLES).copy()
    members = [f"m{j}" for j in range(n)]
    for conf in range(k):
        mixer: Mixer[str] = Mixer()
        mixer.configure(members, all_minus_self(members))
        expected = mixer.mix({m: frames[conf, j] for j, m in enumerate(members)})
        for j, m in enumerate(members):
            np.testing.assert_array_equal(out[conf, j], expected[m])


def test_a_loud_conference_does_not_reach_its_neighbour() -> None:
    batch = MixMinusBatch(2, 3)
    batch.inputs[:3] = 32767  # conference 0 shouts, conference 1 is silent
    out = batch.mix()
    assert (out[:3] == 32767).all()  # each hears the other two, clipped
    assert not out[3:].any()


@pytest.mark.parametrize("pt", [g711.PCMU, g711.PCMA])
def test_decode_into_and_encode_rows_match_the_codec(pt: int) -> None:
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 256, size=4 * FRAME_SAMPLES, dtype=np.uint8).tobytes()
    batch = MixMinusBatch(2, 2)
    batch.decode_into(pt, codes)
    np.testing.assert_array_equal(batch.inputs.reshape(-1), g711.decode(pt, codes))
    pcm = rng.integers(-32768, 32768, size=(3, FRAME_SAMPLES), dtype=np.int16)
    blob = encode_rows(pt, pcm)
    for row in range(3):
        expected = g711.encode_array(pt, pcm[row]).tobytes()
        assert blob[row * FRAME_SAMPLES : (row + 1) * FRAME_SAMPLES] == expected


def test_an_empty_batch_is_refused() -> None:
    with pytest.raises(ValueError):
        MixMinusBatch(0, 3)
