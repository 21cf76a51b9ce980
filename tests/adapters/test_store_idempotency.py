"""The store's IdempotencyStore and its pruning, on both backends (conftest: SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses

from bridgeline.adapters.store import open_store
from bridgeline.adapters.store.base import SqlStore
from bridgeline.app.records import KeyClaim, KeyHolder, StoredAnswer

T0 = 1_700_000_000.0
LOCK = 60.0
TTL = 86_400.0
# An answer with what a round trip through a TEXT column could spoil: non-ASCII, escapes, a newline.
ANSWER = StoredAnswer(
    201, "application/json", '{"api_id":"a1","error":"","note":"Zoë ☎ \\"q\\"\\n"}'.encode()
)


def claim(
    key: str = "key-1", *, auth_id: str = "MA1", fingerprint: str = "fp-1", token: str = "t1", at: float = T0
) -> KeyClaim:
    return KeyClaim(auth_id, key, fingerprint, token, created_at=at, locked_until=at + LOCK)


async def test_a_new_key_is_claimed_then_in_flight_then_answered_byte_for_byte(store: SqlStore) -> None:
    first = claim()
    assert await store.claim_key(first, expired_before=T0 - TTL) is None
    retry = claim(token="t2", at=T0 + 1)
    assert await store.claim_key(retry, expired_before=T0 + 1 - TTL) == KeyHolder("fp-1", None)
    assert await store.record_answer(first, ANSWER)
    held = await store.claim_key(retry, expired_before=T0 + 1 - TTL)
    assert held == KeyHolder("fp-1", ANSWER)
    assert held is not None and held.answer is not None and held.answer.body == ANSWER.body
    assert not await store.record_answer(first, StoredAnswer(500, "application/json", b"{}"))  # answered once


async def test_keys_are_per_account(store: SqlStore) -> None:
    assert await store.claim_key(claim(auth_id="MA1"), expired_before=0) is None
    assert await store.record_answer(claim(auth_id="MA1"), ANSWER)
    assert await store.claim_key(claim(auth_id="MA2", fingerprint="other"), expired_before=0) is None


async def test_another_request_with_the_key_sees_the_first_ones_fingerprint(store: SqlStore) -> None:
    assert await store.claim_key(claim(), expired_before=0) is None
    assert await store.claim_key(claim(fingerprint="fp-2", token="t2"), expired_before=0) == KeyHolder(
        "fp-1", None
    )


async def test_a_released_key_is_free_again_and_only_its_claim_may_release_it(store: SqlStore) -> None:
    first = claim()
    assert await store.claim_key(first, expired_before=0) is None
    assert not await store.release_key(dataclasses.replace(first, token="not-mine"))
    assert await store.release_key(first)
    assert not await store.release_key(first)
    again = claim(token="t2", at=T0 + 1)
    assert await store.claim_key(again, expired_before=0) is None
    assert not await store.record_answer(first, ANSWER)  # the old claim lost the key
    assert await store.record_answer(again, ANSWER)


async def test_an_answered_key_cannot_be_released(store: SqlStore) -> None:
    first = claim()
    assert await store.claim_key(first, expired_before=0) is None
    assert await store.record_answer(first, ANSWER)
    assert not await store.release_key(first)
    assert await store.claim_key(claim(token="t2"), expired_before=0) == KeyHolder("fp-1", ANSWER)


async def test_a_key_past_its_retention_is_claimed_anew_by_any_request(store: SqlStore) -> None:
    first = claim()
    assert await store.claim_key(first, expired_before=0) is None
    assert await store.record_answer(first, ANSWER)
    later = claim(fingerprint="fp-2", token="t2", at=T0 + TTL + 1)
    assert await store.claim_key(later, expired_before=T0 - 1) == KeyHolder("fp-1", ANSWER)  # not yet
    assert await store.claim_key(later, expired_before=T0 + 1) is None
    assert await store.claim_key(claim(token="t3", at=T0 + TTL + 2), expired_before=T0 + 2) == KeyHolder(
        "fp-2", None
    )


async def test_an_unanswered_claim_past_its_lock_is_taken_over_by_the_same_request_only(
    store: SqlStore,
) -> None:
    abandoned = claim()
    assert await store.claim_key(abandoned, expired_before=0) is None
    within = claim(token="t2", at=T0 + LOCK - 1)
    assert await store.claim_key(within, expired_before=0) == KeyHolder("fp-1", None)
    other_request = claim(fingerprint="fp-2", token="t3", at=T0 + LOCK + 1)
    assert await store.claim_key(other_request, expired_before=0) == KeyHolder("fp-1", None)
    takeover = claim(token="t4", at=T0 + LOCK + 1)
    assert await store.claim_key(takeover, expired_before=0) is None
    assert not await store.record_answer(abandoned, ANSWER)  # the dead claim can no longer answer
    assert await store.record_answer(takeover, ANSWER)


async def test_an_answered_key_is_never_taken_over_past_its_lock(store: SqlStore) -> None:
    first = claim()
    assert await store.claim_key(first, expired_before=0) is None
    assert await store.record_answer(first, ANSWER)
    assert await store.claim_key(claim(token="t2", at=T0 + LOCK * 10), expired_before=0) == KeyHolder(
        "fp-1", ANSWER
    )


async def test_pruning_deletes_the_oldest_keys_in_batches(store: SqlStore) -> None:
    for index in range(5):
        one = claim(f"key-{index}", at=T0 + index)
        assert await store.claim_key(one, expired_before=0) is None
        if index % 2:
            assert await store.record_answer(one, ANSWER)
    assert await store.prune_idempotency_keys(created_before=T0 + 3, limit=2) == 2  # key-0, key-1
    assert await store.prune_idempotency_keys(created_before=T0 + 3, limit=2) == 1  # key-2
    assert await store.prune_idempotency_keys(created_before=T0 + 3, limit=2) == 0
    assert await store.claim_key(claim("key-3", token="t9"), expired_before=0) == KeyHolder("fp-1", ANSWER)
    assert await store.claim_key(claim("key-0", token="t9"), expired_before=0) is None  # gone: new again


async def test_of_simultaneous_claims_from_several_connections_exactly_one_wins(
    store: SqlStore, store_url: str
) -> None:
    """Each store has its own connection, as two server processes on one database have."""
    others = [open_store(store_url) for _ in range(3)]
    try:
        stores = [store, *others]
        claims = [claim(token=f"t{index}") for index in range(12)]
        outcomes = await asyncio.gather(
            *(
                stores[index % len(stores)].claim_key(one, expired_before=0)
                for index, one in enumerate(claims)
            )
        )
    finally:
        for other in others:
            await other.close()
    assert outcomes.count(None) == 1
    assert all(outcome == KeyHolder("fp-1", None) for outcome in outcomes if outcome is not None)
