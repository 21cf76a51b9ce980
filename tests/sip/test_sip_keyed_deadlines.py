"""KeyedDeadlines against a plain dict model: whatever the sequence of arm/cancel/pop, the next
deadline and the order keys come due are the model's."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridgeline.sip.keyed_deadlines import KeyedDeadlines

KEYS = st.sampled_from(["a", "b", "c", "d"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("arm"), KEYS, st.one_of(st.none(), st.integers(0, 50).map(float))),
        st.tuples(st.just("pop"), st.just(""), st.integers(0, 50).map(float)),
    ),
    max_size=200,
)


@given(OPS)
def test_matches_a_dict_model(ops: list[tuple[str, str, float | None]]) -> None:
    heap: KeyedDeadlines[str] = KeyedDeadlines()
    model: dict[str, float] = {}
    for op, key, value in ops:
        if op == "arm":
            heap.arm(key, value)
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
        else:
            assert value is not None
            popped = heap.pop_due(value)
            due = {k: d for k, d in model.items() if d <= value}
            if not due:
                assert popped is None
            else:
                assert popped is not None and model[popped] == min(due.values())
                del model[popped]
        assert heap.get_timer() == (min(model.values()) if model else None)
        assert len(heap) == len(model)
        assert all(heap.deadline(k) == d for k, d in model.items())


def test_stale_entries_are_compacted() -> None:
    heap: KeyedDeadlines[str] = KeyedDeadlines()
    for i in range(10_000):
        heap.arm("only", float(i))
    assert len(heap._heap) <= 64 + 1  # re-arming one key does not grow the heap without bound
    assert heap.get_timer() == 9999.0
