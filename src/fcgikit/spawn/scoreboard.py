"""The scoreboard: one fixed-size record per child in anonymous shared memory.

The manager creates it before the first fork, so every child inherits the same
pages. A child writes only its own slot; the manager reads all of them. Each
record carries a sequence number (a seqlock): the writer makes it odd while it
writes and even when done, and a reader retries until it sees the same even
number before and after copying the record, so it never reports a half-written
record (a URI cut in two, a request count from one request and a start time
from another).
"""

import mmap
import struct
import time
from dataclasses import dataclass
from time import monotonic

SLOT_FREE = 0
SLOT_IDLE = 1
SLOT_BUSY = 2
STATE_NAMES = {SLOT_FREE: "free", SLOT_IDLE: "idle", SLOT_BUSY: "busy"}

# seq, pid, state, requests, request_started (monotonic), last_seen (monotonic),
# heartbeats, method, uri
_RECORD = struct.Struct("=QqIQddQ16s440s")
SLOT_SIZE = 512
assert _RECORD.size <= SLOT_SIZE
URI_MAX = 440

# The fields a worker changes on every request are written in place, at their offsets
# in _RECORD ("=": no padding): unpacking and repacking the whole record twice per
# request cost more than all the rest of the bookkeeping.
_STATE_AT = 16
_BUSY = struct.Struct("=IQdd")  # state, requests, request_started, last_seen
_TO_HEARTBEATS = struct.Struct("=QqIQddQ")  # _RECORD up to the method: seq ... heartbeats
_BUSY_AND_TEXT = struct.Struct("=IQddQ16s440s")  # _RECORD from state on
assert _TO_HEARTBEATS.size + struct.calcsize("=16s440s") == _RECORD.size  # then method and uri
assert _STATE_AT + _BUSY_AND_TEXT.size == _RECORD.size
_AFTER_SEQ = struct.Struct("=qIQddQ16s440s")  # _RECORD without the sequence number
assert 8 + _AFTER_SEQ.size == _RECORD.size
# The sequence number is stored and loaded as one aligned 8-byte word through a
# memoryview, never with struct: struct's pack_into zero-fills its target before
# filling it in, so a reader could see a sequence of 0 (even: "stable") in the
# middle of any write, and accept the record being written.
assert SLOT_SIZE % 8 == 0
# How many connections the child holds, in the 4 bytes after the record: outside the
# seqlock, one aligned 32-bit word written and read whole (through a memoryview), so
# a reader sees the old count or the new one. Children compare theirs with the pool's
# once a second (worker/loop.py, RequestLoop._spread_connections).
_CONNS_AT = SLOT_SIZE - 4
assert _CONNS_AT >= _RECORD.size
_STATE_WORD = _STATE_AT // 4  # the state, as a 32-bit word of the slot

# snapshot(): tries before giving up on a clean copy; after SPIN_ATTEMPTS it
# yields the CPU between tries, as a writer on the same CPU must run to finish.
SNAPSHOT_ATTEMPTS = 200
SPIN_ATTEMPTS = 20

# The pool never uses more than half of this, so a reload (old and new children
# side by side) always finds free slots.
SCOREBOARD_SLOTS = 1024


@dataclass(frozen=True)
class SlotSnapshot:
    pid: int
    state: int
    requests: int
    request_started: float
    last_seen: float
    heartbeats: int
    method: str
    uri: str

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, "unknown")


def _cut(text: str, size: int) -> bytes:
    if len(text) <= size and text.isascii():
        return text.encode("ascii")  # nearly every method and URI
    # Cut on a character boundary so a long URI does not end in a broken character.
    return text.encode("utf-8", "replace")[:size].decode("utf-8", "ignore").encode("utf-8")


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", "replace")


class Slot:
    """A child's view of its own record; the methods are what a worker calls."""

    def __init__(self, memory: mmap.mmap, index: int):
        self._current = (0, 0.0)  # requests and request_started of the request being served
        # The reader's last consistent copy; the record as claimed (reset) until one is read.
        self._last_clean = SlotSnapshot(0, SLOT_FREE, 0, 0.0, 0.0, 0, "", "")
        self.index = index
        self._memory = memory
        self._offset = index * SLOT_SIZE
        self._seqs = memoryview(memory).cast("Q")  # every slot's sequence number, one word each
        self._seq_at = self._offset // 8
        self._words = memoryview(memory).cast("I")
        self._conns_at = (self._offset + _CONNS_AT) // 4

    def _fields(self) -> list:
        return list(_RECORD.unpack_from(self._memory, self._offset))

    def _store(self, fields: list) -> None:
        seqs, at = self._seqs, self._seq_at
        seq = seqs[at]
        seqs[at] = seq + 1  # odd: writing
        _AFTER_SEQ.pack_into(self._memory, self._offset + 8, *fields[1:])
        seqs[at] = seq + 2  # even: stable

    def reset(self, pid: int = 0, state: int = SLOT_IDLE) -> None:
        """The manager's (re)start of a slot. A child killed in the middle of a
        write left the sequence odd: it is made even first, or every later
        write would leave it odd and no reader would ever see the slot again."""
        now = time.monotonic()
        seqs, at = self._seqs, self._seq_at
        seqs[at] += seqs[at] & 1
        self._store([0, pid, state, 0, 0.0, now, 0, b"", b""])
        self._words[self._conns_at] = 0
        self._last_clean = SlotSnapshot(pid, state, 0, 0.0, now, 0, "", "")

    def attach(self, pid: int) -> None:
        """Called by the child first thing after fork: the slot is now its own."""
        fields = self._fields()
        fields[1] = pid
        fields[5] = time.monotonic()
        self._store(fields)

    def request_started(self, method: str, uri: str) -> None:
        memory, offset = self._memory, self._offset
        seq, _, _, requests, _, _, heartbeats = _TO_HEARTBEATS.unpack_from(memory, offset)
        seqs, at = self._seqs, self._seq_at
        seqs[at] = seq + 1  # odd: writing
        requests += 1
        now = monotonic()
        self._current = (requests, now)  # for request_finished, which writes them back as they are
        if uri.isascii() and method.isascii():  # too long: struct cuts it, and ASCII has no character to break
            method_text, uri_text = method.encode(), uri.encode()
        else:
            method_text, uri_text = _cut(method, 16), _cut(uri, URI_MAX)
        _BUSY_AND_TEXT.pack_into(
            memory, offset + _STATE_AT, SLOT_BUSY, requests, now, now, heartbeats, method_text, uri_text
        )
        seqs[at] = seq + 2  # even: stable

    def request_finished(self) -> None:
        seqs, at = self._seqs, self._seq_at
        seq = seqs[at]
        seqs[at] = seq + 1  # odd: writing
        _BUSY.pack_into(self._memory, self._offset + _STATE_AT, SLOT_IDLE, *self._current, monotonic())
        seqs[at] = seq + 2  # even: stable

    def heartbeat(self) -> None:
        fields = self._fields()
        fields[5] = time.monotonic()
        fields[6] += 1
        self._store(fields)

    def set_connections(self, count: int) -> None:
        self._words[self._conns_at] = min(count, 0xFFFFFFFF)

    def connections(self) -> int:
        return self._words[self._conns_at]

    def pool_connections(self) -> tuple[int, int]:
        """(connections, children) over every slot in use: what each child says it
        holds, as of its last word (the children's own, not the manager's, view)."""
        per_slot = SLOT_SIZE // 4
        states = self._words[_STATE_WORD::per_slot]
        counts = self._words[_CONNS_AT // 4 :: per_slot]
        children = len(states) - states.tolist().count(SLOT_FREE)
        return sum(counts.tolist()), children

    def snapshot(self, attempts: int = SNAPSHOT_ATTEMPTS) -> SlotSnapshot:
        """A consistent copy of the record (the seqlock's read side).

        The sequence number is read, the record copied, and the sequence read
        again: the copy is kept only when both reads agree on one even number (odd:
        a write is in progress). A writer between the two reads changes the
        number, so a half-written record is never accepted. When no clean copy
        can be had (the writer keeps writing, or was killed half-way through, so
        the number stays odd), the last clean copy is returned: stale, never torn.
        """
        memory, offset, seqs, at = self._memory, self._offset, self._seqs, self._seq_at
        for attempt in range(attempts):
            before = seqs[at]
            if not before & 1:
                raw = memory[offset : offset + _RECORD.size]
                if seqs[at] == before:
                    _, pid, state, requests, started, seen, beats, method, uri = _RECORD.unpack(raw)
                    self._last_clean = SlotSnapshot(
                        pid, state, requests, started, seen, beats, _text(method), _text(uri)
                    )
                    return self._last_clean
            if attempt >= SPIN_ATTEMPTS:
                time.sleep(0)  # let the writer finish (it may share our CPU)
        return self._last_clean


class NullSlot:
    """Stands in for a slot where there is no scoreboard (a worker run alone)."""

    index = -1

    def request_started(self, method: str, uri: str) -> None:
        pass

    def request_finished(self) -> None:
        pass

    def heartbeat(self) -> None:
        pass

    def set_connections(self, count: int) -> None:
        pass

    def pool_connections(self) -> tuple[int, int]:
        return 0, 1


class Scoreboard:
    """All slots, in memory shared with every child forked after it was made."""

    def __init__(self, slots: int = SCOREBOARD_SLOTS):
        self.size = slots
        # mmap(-1, ...) is MAP_SHARED | MAP_ANONYMOUS: shared across fork, no file.
        self._memory = mmap.mmap(-1, slots * SLOT_SIZE)
        self._in_use: set[int] = set()

    def claim(self) -> Slot | None:
        """A free slot, reset and marked idle; None when every slot is taken."""
        for index in range(self.size):
            if index not in self._in_use:
                self._in_use.add(index)
                slot = Slot(self._memory, index)
                slot.reset()
                return slot
        return None

    def release(self, slot: Slot) -> None:
        slot.reset(state=SLOT_FREE)
        self._in_use.discard(slot.index)
