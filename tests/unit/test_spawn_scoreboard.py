"""The scoreboard in shared memory: what a child writes, the manager reads."""

import os

from fcgikit.spawn.scoreboard import (SLOT_BUSY, SLOT_FREE, SLOT_IDLE, URI_MAX, NullSlot,
                                      Scoreboard)


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
