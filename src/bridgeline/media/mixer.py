"""Conference mixing for one 20 ms tick: mix-minus fast path plus arbitrary "who hears whom" routing.

`Mixer` compiles the routing once (on join/hold/transfer events, not per tick) into kernels; the
cheapest that fits the whole routing is chosen then, as at small N a tick costs about one numpy
call's overhead per step:

* gather: when nobody hears more than one source (a two-party call is a swap, hold music a copy),
  nothing can overflow and the tick is one row gather.
* mix-minus: total = int32 sum of the mix group, once; each member in it gets clip(total - own).
  A plain conference is exactly four numpy calls: reduce, subtract, clip, cast to int16.
* deltas: any other route is written as (total or nothing) plus or minus a few sources, e.g. "the
  group but not the member on hold", "only each other" or "only the music". Listeners with identical
  routes share one output row. Row-wise gathers cost a numpy call per term, not per listener.
* dense: only routes that differ from the group in many places use a 0/1 routing matrix (mixes x
  sources) @ (sources x samples). numpy's integer matmul bypasses BLAS and int32 einsum is no
  better: both measured 10-40x slower than float32 matmul at 100 members. float32 is exact here, as
  512 int16 values sum to less than 2**24 (larger conferences use float64). BLAS may start threads,
  which hurts a busy server: deployments should set OPENBLAS_NUM_THREADS=1.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

FRAME_SAMPLES = 160
_INT16_MIN, _INT16_MAX = -32768, 32767
_EXACT_F32_SOURCES = 512  # 512 * 32768 == 2**24, the float32 integer-exact limit

K = TypeVar("K", bound=Hashable)


def _find_clip_ufunc() -> np.ufunc | None:
    """numpy's clip ufunc. np.clip() wraps it in Python argument handling that costs more than
    the clipping of a 160-sample frame, so the hot path calls the ufunc itself when it is there."""
    for module in ("_core", "core"):  # numpy 2.x, then 1.x
        umath = getattr(getattr(np, module, None), "umath", None)
        clip = getattr(umath, "clip", None)
        if isinstance(clip, np.ufunc):
            return clip
    return None


_CLIP = _find_clip_ufunc()
# 0-d array bounds: python-int or numpy-scalar bounds make every ufunc call resolve their type again.
_LO32, _HI32 = np.array(_INT16_MIN, dtype=np.int32), np.array(_INT16_MAX, dtype=np.int32)


def saturate(acc: NDArray[np.int32], out: NDArray[np.int16]) -> None:
    """out = acc clipped to int16; clobbers acc. Two calls: clip in int32 (one pass), then a cast."""
    if _CLIP is not None:
        _CLIP(acc, _LO32, _HI32, out=acc)
    else:  # a numpy without the clip ufunc
        np.minimum(acc, _HI32, out=acc)
        np.maximum(acc, _LO32, out=acc)
    np.copyto(out, acc, casting="unsafe")


def mix_minus(frames: NDArray[np.int16], out: NDArray[np.int16] | None = None) -> NDArray[np.int16]:
    """Row i of the result is the clipped sum of every row of `frames` except row i."""
    total = np.add.reduce(frames, axis=0, dtype=np.int32)
    acc = np.subtract(total, frames, dtype=np.int32)
    if out is None:
        out = np.empty(frames.shape, dtype=np.int16)
    saturate(acc, out)
    return out


def mix_routed(
    frames: NDArray[np.int16], routing: NDArray[Any], out: NDArray[np.int16] | None = None
) -> NDArray[np.int16]:
    """Row l of the result is the clipped sum of the source rows s where routing[l, s] is nonzero."""
    ftype = np.float32 if frames.shape[0] <= _EXACT_F32_SOURCES else np.float64
    mixed = np.matmul((routing != 0).astype(ftype), frames.astype(ftype))
    if out is None:
        out = np.empty(mixed.shape, dtype=np.int16)
    np.clip(mixed, _INT16_MIN, _INT16_MAX, out=mixed)
    np.copyto(out, mixed, casting="unsafe")
    return out


def all_minus_self(members: Iterable[K], extra_listeners: Iterable[K] = ()) -> dict[K, set[K]]:
    """Routes for a plain conference: each member hears all others; extra listeners hear everyone."""
    group = list(members)
    routes = {m: set(group) - {m} for m in group}
    routes.update({m: set(group) for m in extra_listeners})
    return routes


class Mixer(Generic[K]):
    """Routing-compiled mixer for one conference. Keys identify members and music sources alike.

    Per tick, either write frames into `inputs[source_row[key]]` (rows keep their value between
    ticks: zero the row of a source that went silent) and call `mix_inputs()`, or pass a mapping to
    `mix()`. Outputs are views into a buffer that the next tick overwrites; encode them straight away,
    e.g. the whole matrix at once with `g711.ulaw_encode_array`.
    """

    def __init__(self, frame_samples: int = FRAME_SAMPLES) -> None:
        self.frame_samples = frame_samples
        self.configure((), {})

    def configure(self, sources: Sequence[K], routes: Mapping[K, Collection[K]]) -> None:
        """Set who is mixed (`sources`) and who hears what (`routes`: listener -> sources).

        A listener never hears itself: such a route entry is ignored. Sources that are not in
        `sources` are ignored too, so a route may name a member that currently has no audio.
        """
        source_set = set(sources)
        clean = {lis: frozenset(heard) & (source_set - {lis}) for lis, heard in routes.items()}
        # The mix group is the set most listeners hear once their own voice is added back.
        keys = Counter(heard | ({lis} & source_set) for lis, heard in clean.items())
        group = max(keys, key=lambda g: (keys[g], len(g))) if keys else frozenset()
        speakers = [k for k in sources if k in group and clean.get(k) == group - {k}]
        if len(speakers) < 2:
            # No plain conference: still sum what most routes share, so that routes become deltas.
            distinct = set(clean.values())
            counts = Counter(s for heard in distinct for s in heard)
            group = frozenset(s for s, c in counts.items() if 2 * c > len(distinct))
            speakers = [k for k in sources if k in group and clean.get(k) == group - {k}]
        # Source rows: speakers first (so own frames are one slice), the rest of the group, the others.
        ordered = speakers + [k for k in sources if k in group and k not in speakers]
        ordered += [k for k in sources if k not in group]
        self.source_row: dict[K, int] = {k: i for i, k in enumerate(ordered)}
        self.output_row: dict[K, int] = {k: i for i, k in enumerate(speakers)}
        general: dict[frozenset[K], int] = {}
        for lis, heard in clean.items():
            if lis not in self.output_row:
                self.output_row[lis] = general.setdefault(heard, len(speakers) + len(general))
        self._n_speakers, self._n_group = len(speakers), len(group)
        f, n_rows = self.frame_samples, len(speakers) + len(general)
        # One spare zero row at the end: padding entries of the delta layers point at it.
        self._frames = np.zeros((len(ordered) + 1, f), dtype=np.int16)
        self.inputs: NDArray[np.int16] = self._frames[:-1]
        self._acc = np.zeros((n_rows, f), dtype=np.int32)
        self._total = np.zeros(f, dtype=np.int32)
        self._out: NDArray[np.int16] = np.zeros((n_rows, f), dtype=np.int16)
        self._compile_general(list(general), group)
        heard_by_row = [group - {k} for k in speakers] + list(general)
        self._kernel_name, self._kernel = self._choose_kernel(heard_by_row)

    def _compile_general(self, routes: list[frozenset[K]], group: frozenset[K]) -> None:
        """Write each route as (group total or nothing) + extra sources - missing ones, stored as
        index layers so that one gather per layer serves every row; or as a dense matrix."""
        n_sources, zero_row = len(self.source_row), len(self.source_row)
        uses_total, plus, minus = [], [], []
        for heard in routes:
            extra, missing = heard - group, group - heard
            from_total = bool(group) and len(extra) + len(missing) < len(heard)
            uses_total.append(from_total)
            plus.append([self.source_row[s] for s in (extra if from_total else heard)])
            minus.append([self.source_row[s] for s in missing] if from_total else [])

        def layers(terms: list[list[int]]) -> NDArray[np.intp]:
            """(depth, rows): layer j holds every row's j-th term, or the zero row if it has fewer."""
            depth = max(map(len, terms), default=0)
            padded = [t + [zero_row] * (depth - len(t)) for t in terms]
            return np.array(padded, dtype=np.intp).reshape(len(terms), depth).T.copy()

        self._plus, self._minus = layers(plus), layers(minus)
        depth = len(self._plus) + len(self._minus)
        self._dense = depth > 8 and 4 * depth > n_sources  # many terms per row: a matmul is cheaper
        if self._dense and not self._n_speakers:
            self._n_group = 0  # nobody needs the group total
        self._n_general = len(routes)
        self._all_total = all(uses_total) and bool(routes) and not self._dense
        self._any_total = any(uses_total) and not self._dense
        self._uses_total = np.array(uses_total, dtype=np.int32).reshape(-1, 1)
        ftype = np.float32 if n_sources <= _EXACT_F32_SOURCES else np.float64
        self._routing = np.zeros((len(routes) if self._dense else 0, n_sources), dtype=ftype)
        for row, heard in enumerate(routes if self._dense else ()):
            self._routing[row, [self.source_row[s] for s in heard]] = 1

    @property
    def uses_fast_path(self) -> bool:
        """True when some listeners get the plain mix-minus (total - own frame)."""
        return self._n_speakers > 0

    @property
    def kernel(self) -> str:
        """The tick chosen for the current routing: "gather", "mix-minus" or "general"."""
        return self._kernel_name

    def _choose_kernel(self, heard_by_row: list[frozenset[K]]) -> tuple[str, Callable[[], NDArray[np.int16]]]:
        """Pick the cheapest tick for this routing, once per configure(): at small N a tick costs
        about one numpy call's overhead per step, so every step saved counts."""
        frames, out, zero_row = self._frames, self._out, len(self.source_row)
        if all(len(heard) <= 1 for heard in heard_by_row):
            # Everyone hears one source or none (two-party call, hold music, alone): no sum can
            # overflow, so the tick is one gather, silent rows reading the spare zero row.
            index = np.array(
                [self.source_row[next(iter(heard))] if heard else zero_row for heard in heard_by_row],
                dtype=np.intp,
            ).reshape(-1)

            def gather() -> NDArray[np.int16]:
                frames.take(index, axis=0, out=out, mode="clip")  # indices are valid: no bounds check
                return out

            return "gather", gather
        if self._n_general == 0:  # a plain conference: everyone gets total - own
            k, total, acc = self._n_speakers, self._total, self._acc
            group, own = frames[: self._n_group], frames[:k]

            def plain_mix_minus() -> NDArray[np.int16]:
                np.add.reduce(group, axis=0, dtype=np.int32, out=total)
                np.subtract(total, own, out=acc)
                saturate(acc, out)  # four numpy calls per tick in all
                return out

            return "mix-minus", plain_mix_minus
        return "general", self._mix_general

    def mix_inputs(self) -> NDArray[np.int16]:
        """Mix `inputs` into the output matrix; listener k's frame is row `output_row[k]`.

        The result is the same buffer every tick, overwritten by the next call (not by writes to
        `inputs`): encode or copy it before mixing again.
        """
        return self._kernel()

    def _mix_general(self) -> NDArray[np.int16]:
        frames, acc, total, k = self._frames, self._acc, self._total, self._n_speakers
        if self._n_group:
            np.add.reduce(frames[: self._n_group], axis=0, dtype=np.int32, out=total)
            if k:
                np.subtract(total, frames[:k], out=acc[:k])
        if self._n_general and not self._dense:
            general = acc[k:]
            if self._all_total:
                general[...] = total
            elif self._any_total:
                np.multiply(self._uses_total, total, out=general)
            else:
                general.fill(0)
            for layer in self._plus:
                np.add(general, frames.take(layer, axis=0), out=general)
            for layer in self._minus:
                np.subtract(general, frames.take(layer, axis=0), out=general)
        rows = k if self._dense else acc.shape[0]
        saturate(acc[:rows], self._out[:rows])
        if self._dense:
            mixed = np.matmul(self._routing, self.inputs.astype(self._routing.dtype))
            np.clip(mixed, _INT16_MIN, _INT16_MAX, out=mixed)
            np.copyto(self._out[k:], mixed, casting="unsafe")
        return self._out

    def mix(self, frames: Mapping[K, NDArray[np.int16] | None]) -> dict[K, NDArray[np.int16]]:
        """Convenience form: sources missing from `frames` (or None) are silent this tick."""
        inputs = self.inputs
        inputs.fill(0)
        for key, frame in frames.items():
            row = self.source_row.get(key)
            if row is not None and frame is not None:
                inputs[row] = frame
        out = self.mix_inputs()
        return {lis: out[row] for lis, row in self.output_row.items()}
