"""The scoreboard in shared memory: what a child writes, the manager reads."""

import os
import signal
import time

from fcgikit.spawn.scoreboard import SLOT_BUSY, SLOT_FREE, SLOT_IDLE, URI_MAX, NullSlot, Scoreboard


def test_a_request_is_seen_while_it_runs_and_counted_after():
    board = Scoreboard(slots=4)
    slot = board.claim()
    slot.request_started("POST", "/upload?x=1")
    snap = slot.snapshot()
    assert (snap.state, snap.method, snap.uri, snap.requests) == (SLOT_BUSY, "POST", "/upload?x=1", 1)
    slot.request_finished()
    slot.heartbeat()
    snap = slot.snapshot()
    assert snap.state == SLOT_IDLE and snap.requests == 1 and snap.heartbeats == 1
    slot.request_started("GET", "/next")  # the next request leaves the heartbeat count as it was
    snap = slot.snapshot()
    assert (snap.state, snap.uri, snap.requests, snap.heartbeats) == (SLOT_BUSY, "/next", 2, 1)


def test_slots_are_shared_with_a_forked_child():
    board = Scoreboard(slots=2)
    slot = board.claim()
    pid = os.fork()
    if pid == 0:
        slot.attach(os.getpid())
        slot.request_started("GET", "/from-child")
        os._exit(0)
    os.waitpid(pid, 0)
    snap = slot.snapshot()
    assert snap.pid == pid and snap.uri == "/from-child" and snap.state == SLOT_BUSY


def test_claim_and_release():
    board = Scoreboard(slots=2)
    first, second = board.claim(), board.claim()
    assert board.claim() is None
    board.release(first)
    assert first.snapshot().state == SLOT_FREE
    assert board.claim().index == first.index and second.index != first.index


def test_long_uris_are_cut_not_overflowing_the_next_slot():
    board = Scoreboard(slots=2)
    first, second = board.claim(), board.claim()
    second.request_started("GET", "/neighbour")
    first.request_started("GET", "/" + "é" * 1000)
    assert len(first.snapshot().uri.encode()) <= URI_MAX
    assert second.snapshot().uri == "/neighbour"
    first.request_started("PROPFIND-EXTENDED-METHOD", "/" + "a" * 1000)  # ASCII: cut by length alone
    assert first.snapshot().uri == "/" + "a" * (URI_MAX - 1)
    assert first.snapshot().method == "PROPFIND-EXTENDE"
    assert second.snapshot().uri == "/neighbour"


def test_null_slot_accepts_the_calls():
    slot = NullSlot()
    slot.request_started("GET", "/")
    slot.heartbeat()
    slot.request_finished()


def _uri_for(n: int) -> str:
    """A long URI whose every part says which request wrote it."""
    return f"/{n:08d}/" + chr(ord("a") + n % 26) * 400


def _consistent(snap) -> bool:
    if snap.requests == 0:
        return snap.uri == "" and snap.pid in (0, snap.pid)
    return (snap.uri == _uri_for(snap.requests) and snap.request_started > 0
            and snap.last_seen >= snap.request_started
            and (snap.state != SLOT_BUSY or snap.last_seen == snap.request_started)
            and snap.heartbeats in (snap.requests - 1, snap.requests))


def test_a_reader_racing_a_writer_process_never_accepts_a_torn_record():
    """The seqlock's promise, tried for real: a child process rewrites its record
    as fast as it can while this process reads it. Every record accepted must be
    one the writer wrote whole (its URI, count and times from the same request)."""
    board = Scoreboard(slots=2)
    slot = board.claim()
    pid = os.fork()
    if pid == 0:
        try:
            slot.attach(os.getpid())
            n = 0
            while True:
                n += 1
                slot.request_started("GET", _uri_for(n))
                slot.request_finished()
                slot.heartbeat()
        finally:
            os._exit(0)
    torn, reads, moved = [], 0, set()
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and reads < 400_000:
            snap = slot.snapshot()
            reads += 1
            moved.add(snap.requests)
            if not _consistent(snap):
                torn.append(snap)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert len(moved) > 100, "the writer hardly ran: the race was not tried"
    assert not torn, f"{len(torn)} torn records of {reads} accepted, e.g. {torn[0]}"


def test_a_writer_killed_half_way_leaves_a_stale_record_not_a_torn_one():
    board = Scoreboard(slots=2)
    slot = board.claim()
    slot.request_started("GET", _uri_for(1))
    slot.request_finished()
    good = slot.snapshot()
    seqs = memoryview(slot._memory).cast("Q")
    seqs[slot._seq_at] += 1  # as a child SIGKILLed between "odd" and "even"
    slot._memory[slot._offset + 100:slot._offset + 110] = b"x" * 10  # and half its write done
    assert slot.snapshot() == good
    board.release(slot)  # the manager's reset makes the slot usable again
    again = board.claim()
    assert again.index == slot.index and again.snapshot().requests == 0
    again.request_started("GET", "/after")
    assert again.snapshot().uri == "/after"


def test_the_connections_each_child_holds_add_up_over_the_slots_in_use():
    board = Scoreboard(slots=4)
    first, second, third = board.claim(), board.claim(), board.claim()
    first.set_connections(10)
    second.set_connections(3)
    assert first.pool_connections() == (13, 3) and third.pool_connections() == (13, 3)
    first.request_started("GET", "/" + "a" * 1000)  # the longest URI stops short of the count
    assert first.connections() == 10
    board.release(second)  # a child gone: its connections with it
    assert first.pool_connections() == (10, 2)
    assert board.claim().connections() == 0
