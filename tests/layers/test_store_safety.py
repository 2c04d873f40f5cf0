"""Stores that never lose an acknowledged write: counters, many writers at once, a
PostgreSQL restart, and the GeoPackage read path (sqlite3) against GDAL's."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from layers.errors import StoreError
from layers.store import open_store

# ---- counters -----------------------------------------------------------------------------


def _reserve_numbers(url: str, name: str, rounds: int, queue) -> None:
    """A separate process: reserve 1 or 2 numbers per transaction, roll back every third one,
    and report the numbers of the transactions that committed."""
    kept = []
    with open_store(url) as store:
        for i in range(rounds):
            count = 1 + i % 2
            try:
                with store.transaction() as tx:
                    first = tx.next_number(name, count)
                    if i % 3 == 2:
                        raise _Undo
            except _Undo:
                continue
            kept += range(first, first + count)
    queue.put(kept)


class _Undo(Exception):
    pass


def test_counters_start_at_one_and_reserve_consecutive_numbers(store):
    with store.transaction() as tx:
        assert tx.next_number("case:20261130") == 1
        assert tx.next_number("case:20261130", 5) == 2
        assert tx.next_number("case:20261201") == 1
    with store.transaction() as tx:
        assert tx.next_number("case:20261130") == 7


def test_a_rolled_back_transaction_gives_its_numbers_back(store):
    with store.transaction() as tx:
        tx.next_number("n", 3)
    with pytest.raises(_Undo), store.transaction() as tx:
        assert tx.next_number("n", 10) == 4
        raise _Undo
    with store.transaction() as tx:
        assert tx.next_number("n") == 4


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_a_counter_refuses_a_count_that_is_not_a_positive_whole_number(store, bad):
    with pytest.raises(StoreError, match="count"), store.transaction() as tx:
        tx.next_number("n", bad)


def test_counters_from_several_processes_have_no_duplicate_and_no_gap(store_url):
    open_store(store_url).close()  # create the store before the processes race to
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_reserve_numbers, args=(store_url, "case:20261130", 30, queue))
             for _ in range(4)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    numbers = sorted(n for kept in got for n in kept)
    assert numbers == list(range(1, len(numbers) + 1))
    # 4 processes x 20 committed transactions, alternately reserving 2 and 1 numbers
    assert len(numbers) == 4 * sum(1 + i % 2 for i in range(30) if i % 3 != 2)
