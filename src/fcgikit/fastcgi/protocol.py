"""FastCGI 1.0 as pure code: bytes in, events out; calls in, bytes out.

Nothing here touches a socket, so every rule of the specification is tested with
plain byte strings. The I/O layers (worker, client) feed what they read into a
connection object and send what it hands back.
"""

from __future__ import annotations

import functools
import struct
import sys
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter

FCGI_VERSION_1 = 1
HEADER = struct.Struct("!BBHHBx")
HEADER_LEN = HEADER.size  # 8

FCGI_BEGIN_REQUEST = 1
FCGI_ABORT_REQUEST = 2
FCGI_END_REQUEST = 3
FCGI_PARAMS = 4
FCGI_STDIN = 5
FCGI_STDOUT = 6
FCGI_STDERR = 7
FCGI_DATA = 8
FCGI_GET_VALUES = 9
FCGI_GET_VALUES_RESULT = 10
FCGI_UNKNOWN_TYPE = 11
FCGI_MAXTYPE = FCGI_UNKNOWN_TYPE

FCGI_NULL_REQUEST_ID = 0

FCGI_RESPONDER = 1
FCGI_AUTHORIZER = 2
FCGI_FILTER = 3

FCGI_KEEP_CONN = 1

FCGI_REQUEST_COMPLETE = 0
FCGI_CANT_MPX_CONN = 1
FCGI_OVERLOADED = 2
FCGI_UNKNOWN_ROLE = 3

# 65535 would be legal, but strict readers (php-fpm's among them) refuse a record
# whose content plus padding exceeds 65535; 65528 is the largest multiple of 8
# below it, so our records never need padding when they are full.
MAX_CONTENT = 65528

# A request's params may legitimately hold values over 64 KiB (long cookies,
# query strings), but not without bound: past this a peer is hostile or broken.
DEFAULT_PARAMS_LIMIT = 8 * 1024 * 1024

BEGIN_BODY = struct.Struct("!HB5x")
# A whole BEGIN_REQUEST record (header, then role and flags), read in one go.
_BEGIN_RECORD = struct.Struct("!BBHHBxHB5x")
# The same, and the header of the record after it (a PARAMS one, in a request).
_BEGIN_AND_NEXT_HEADER = struct.Struct("!BBHHBxHB5xBBHHBx")
# Its version, type, content length, padding and role when it begins a RESPONDER request.
_RESPONDER_BEGIN = (FCGI_VERSION_1, FCGI_BEGIN_REQUEST, BEGIN_BODY.size, 0, FCGI_RESPONDER)
# BEGIN_REQUEST, the end of PARAMS, the end of STDIN: the shortest request there is.
_SMALLEST_WHOLE_REQUEST = 8 + 8 + 8 + 8
END_BODY = struct.Struct("!IB3x")
_PADDING = bytes(8)


class ProtocolError(Exception):
    """The peer broke the protocol; the connection cannot be trusted any further."""


# --- encoding -------------------------------------------------------------------


def encode_record(rtype: int, request_id: int, content: bytes = b"") -> bytes:
    """One record, padded so that the next header starts on an 8-byte boundary."""
    length = len(content)
    if length > 65535:
        raise ValueError(f"record content of {length} bytes exceeds 65535")
    padding = -length & 7
    return b"".join(
        (HEADER.pack(FCGI_VERSION_1, rtype, request_id, length, padding), content, _PADDING[:padding])
    )


def encode_stream(rtype: int, request_id: int, data: bytes) -> bytes:
    """`data` as records of at most MAX_CONTENT bytes (no end-of-stream record).

    Empty data gives no record: an empty record would end the stream.
    """
    if len(data) <= MAX_CONTENT:
        return encode_record(rtype, request_id, data) if data else b""
    view = memoryview(data)
    return b"".join(
        encode_record(rtype, request_id, bytes(view[i : i + MAX_CONTENT]))
        for i in range(0, len(data), MAX_CONTENT)
    )


def _encode_length(n: int) -> bytes:
    if n < 128:
        return bytes((n,))
    if n > 0x7FFFFFFF:
        raise ValueError(f"name-value length {n} does not fit in 31 bits")
    return struct.pack("!I", n | 0x80000000)


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def encode_params(pairs) -> bytes:
    """Name-value pairs (a mapping or an iterable of pairs) as one byte string."""
    items = pairs.items() if hasattr(pairs, "items") else pairs
    out: list[bytes] = []
    for name, value in items:
        name, value = _as_bytes(name), _as_bytes(value)
        out += (_encode_length(len(name)), _encode_length(len(value)), name, value)
    return b"".join(out)


def decode_params(body: bytes) -> list[tuple[bytes, bytes]]:
    """The name-value pairs of a complete PARAMS (or GET_VALUES) stream.

    Every length is checked against what is left of the body, so a length that
    claims gigabytes is an error, not an allocation.
    """
    pairs = []
    pos, end = 0, len(body)
    while pos < end:
        name_len, pos = _decode_length(body, pos)
        value_len, pos = _decode_length(body, pos)
        if pos + name_len + value_len > end:
            raise ProtocolError(
                f"name-value pair claims {name_len}+{value_len} bytes, {end - pos} left"
            )
        name = body[pos : pos + name_len]
        pos += name_len
        pairs.append((name, body[pos : pos + value_len]))
        pos += value_len
    return pairs


# A web server sends the same params, in the same order, for every request to a
# location, and most of their values too (the method, the server's name, address
# and port, the protocol, the empty CONTENT_TYPE of a GET, most headers): only a
# few change (the client's port, the URI, the query). So the decoder keeps, from a
# body it learned, a template: what that body decoded to (a dict, copied in C for
# each request), and the bytes around the values that changed from the body
# learned before it, as steps (`before`, `name`, its key, how many pairs come
# before `before`): `before` is the bytes from the end of the last such value to
# the length of this one's value (the unchanged pairs in between, then this pair's
# name length), `name` its name. A body that holds exactly these bytes, each value
# of its own length after its name, and then the template's `tail`, decodes to the
# template's dict with those values put in: a few `startswith` and a slice per
# changing value, instead of two slices and a store per pair. A body that holds
# them only up to some step's `before`, or up to the tail (other headers, say),
# takes the template's pairs up to there and is decoded pair by pair from there on
# (`_decode_pairs`), as is a body that fits nothing: the template changes how fast a
# body is decoded, never what it decodes to. A body the template did not fit is
# learned from: the first _LEARN_AT_ONCE of them, then every _LEARN_EVERY-th
# (traffic whose shape keeps changing pays for little learning). See docs/bench.md,
# issue 16.
_Template = tuple[tuple[tuple[bytes, bytes, str, int, tuple[bytes, ...]], ...], bytes, int, tuple[bytes, ...],
                  dict[str, str]]
_template: _Template | None = None
# What the last learned body held, for the next learning: each name's pair as bytes,
# and the names whose values changed (they stay changing: no flapping back and forth).
_learned_pairs: dict[str, bytes] = {}
_changing: frozenset[str] = frozenset()
_misses = 0  # bodies the template did not fit
_LEARN_MAX = 16 * 1024  # a larger body is decoded, not learned from (the template stays small)
_LEARN_AT_ONCE = 8
_LEARN_EVERY = 64
_LONG_LENGTH = struct.Struct("!I")


def decode_params_text(body: bytes) -> dict[str, str]:
    """A complete PARAMS stream as a dict of latin-1 strings; duplicates: the last wins.

    The same checks as decode_params, and the same dict, in the same order. A
    body that fits the template of the bodies before it (above) is taken from
    it: for nginx's 21 params with the client's port changing, about 8k
    instructions instead of 65k.
    """
    template = _template
    if template is None:
        result: dict[str, str] = {}
        boundary = 0
    else:
        steps, tail, tail_fitted, tail_pairs, learned = template
        result = learned.copy()
        pos, end = 0, len(body)
        for before, name, key, fitted, pairs in steps:  # noqa: B007 (`fitted`, `pairs`: read after a break)
            boundary = pos
            if not body.startswith(before, pos):
                break
            pos += len(before)
            if pos >= end:
                break
            value_len = body[pos]
            if value_len < 128:
                pos += 1
            elif pos + 4 <= end:
                value_len = _LONG_LENGTH.unpack_from(body, pos)[0] & 0x7FFFFFFF
                pos += 4
            else:
                break
            if not body.startswith(name, pos):
                break
            start = pos + len(name)
            pos = start + value_len
            if pos > end:
                break
            result[key] = body[start:pos].decode("latin-1")
        else:
            if end - pos == len(tail) and body.startswith(tail, pos):
                return result
            boundary, fitted, pairs = pos, tail_fitted, tail_pairs
        # The body holds the template's first `fitted` pairs up to `boundary`, and
        # then something else: as many of the next pairs as it holds unchanged.
        for pair in pairs:
            if not body.startswith(pair, boundary):
                break
            boundary += len(pair)
            fitted += 1
        result = dict(islice(result.items(), fitted)) if fitted else {}
    _decode_pairs(body, body.decode("latin-1"), boundary, result)
    global _misses
    _misses += 1
    if (_misses <= _LEARN_AT_ONCE or _misses % _LEARN_EVERY == 0) and len(body) <= _LEARN_MAX:
        _learn(body)
    return result


def _decode_pairs(body: bytes, text: str, pos: int, result: dict[str, str]) -> None:
    """Decodes body[pos:] (`text` is all of it as latin-1) into `result`, pair by pair.

    Nearly every name and value is under 128 bytes (one-byte lengths): a body
    with no byte above 127 at all takes a loop that reads them without a test
    (nginx's usual params); any other reads both lengths at once and leaves
    4-byte ones to _long_lengths.
    """
    end = len(body)
    try:
        if body.isascii():
            # No byte above 127 (one C call): every length is a one-byte one, and
            # the loop needs no test for the 4-byte form (nginx's usual params).
            while pos < end:
                start = pos + 2
                middle = start + body[pos]
                pos = middle + body[pos + 1]  # IndexError: the stream ends inside a length
                result[text[start:middle]] = text[middle:pos]
            if pos > end:
                raise ProtocolError(f"name-value pair claims {middle - start}+{pos - middle} bytes, "
                                    f"{end - start} left")
            return
        while pos < end:
            name_len = body[pos]
            value_len = body[pos + 1]  # IndexError: the stream ends inside a length
            if (name_len | value_len) < 128:
                start = pos + 2
            else:
                name_len, value_len, start = _long_lengths(body, pos)
            middle = start + name_len
            pos = middle + value_len
            # A pair running past the end can only be the last one (the loop
            # ends with it): checked once, below; its cut-short strings are dropped.
            result[text[start:middle]] = text[middle:pos]
    except IndexError:
        raise ProtocolError("name-value pair truncated in its length") from None
    if pos > end:
        raise ProtocolError(f"name-value pair claims {name_len}+{value_len} bytes, {end - start} left")


def _learn(body: bytes) -> None:
    """The template from `body`, a valid PARAMS stream: a pair whose bytes differ
    from the last learned body's pair of that name, or that differed then, is a
    changing one (a step); the others are taken as they are. A body with a name
    twice is not learned from (its dict would not say in which order they came)."""
    global _template, _learned_pairs, _changing
    previous, changed = _learned_pairs, _changing
    steps: list[tuple[bytes, bytes, str, int, tuple[bytes, ...]]] = []
    pairs: dict[str, bytes] = {}
    unchanged: list[bytes] = []  # the pairs since the last step
    learned: dict[str, str] = {}
    changing: set[str] = set()
    text = body.decode("latin-1")
    pos = cursor = fitted = 0
    end = len(body)
    while pos < end:
        name_len = body[pos]
        value_len = body[pos + 1]
        if (name_len | value_len) < 128:
            value_at = pos + 1  # where the value's length is
            start = pos + 2
        else:
            value_at = pos + (1 if name_len < 128 else 4)
            name_len, value_len, start = _long_lengths(body, pos)
        middle = start + name_len
        stop = middle + value_len
        # Interned: the names an app looks up (environ["PATH_INFO"]) are interned
        # constants of its code, so each lookup finds the very same string object.
        key = sys.intern(text[start:middle])
        if key in learned:
            return
        raw = body[pos:stop]
        learned[key] = text[middle:stop]
        pairs[key] = raw
        if key in changed or previous.get(key, raw) != raw:
            changing.add(key)
            steps.append((body[cursor:value_at], body[start:middle], key, fitted, tuple(unchanged)))
            cursor = stop
            fitted = len(learned)
            unchanged = []
        else:
            unchanged.append(raw)
        pos = stop
    _template = (tuple(steps), body[cursor:], fitted, tuple(unchanged), learned)
    _learned_pairs, _changing = pairs, frozenset(changing)


def _long_lengths(body: bytes, pos: int) -> tuple[int, int, int]:
    """The name and value lengths of a pair with a 4-byte length, and where its name starts."""
    name_len, pos = _decode_length(body, pos)
    value_len, pos = _decode_length(body, pos)
    return name_len, value_len, pos


def _decode_length(body: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(body):
        raise ProtocolError("name-value pair truncated in its length")
    first = body[pos]
    if first < 128:
        return first, pos + 1
    if pos + 4 > len(body):
        raise ProtocolError("name-value pair truncated in its 4-byte length")
    return struct.unpack_from("!I", body, pos)[0] & 0x7FFFFFFF, pos + 4


def encode_end_request(request_id: int, app_status: int = 0, protocol_status: int = FCGI_REQUEST_COMPLETE) -> bytes:
    return encode_record(FCGI_END_REQUEST, request_id, END_BODY.pack(app_status & 0xFFFFFFFF, protocol_status))


def encode_begin_request(request_id: int, role: int = FCGI_RESPONDER, keep_conn: bool = False) -> bytes:
    return encode_record(FCGI_BEGIN_REQUEST, request_id, BEGIN_BODY.pack(role, FCGI_KEEP_CONN if keep_conn else 0))


# --- record framing -------------------------------------------------------------


class RecordReader:
    """Cuts a byte stream into (type, request_id, content) records.

    Records are sliced straight out of each read (one copy of the content); only
    a record cut by the end of a read waits in a small buffer for the rest. A
    large upload thus costs one copy per byte here, not three.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        if type(data) is not bytes:
            data = bytes(data)  # contents are sliced from it and must be bytes
        records: list[tuple[int, int, bytes]] = []
        pos = 0
        if self._buf:
            pos = self._finish_buffered(data, records)
            if pos < 0:
                return records
        end = len(data)
        unpack = HEADER.unpack_from
        while end - pos >= HEADER_LEN:
            version, rtype, request_id, length, padding = unpack(data, pos)
            if version != FCGI_VERSION_1:
                raise ProtocolError(f"unsupported FastCGI version {version} (record type {rtype})")
            total = HEADER_LEN + length + padding
            if end - pos < total:
                break
            start = pos + HEADER_LEN
            records.append((rtype, request_id, data[start : start + length]))
            pos += total
        if pos < end:
            self._buf += memoryview(data)[pos:]
        return records

    def _finish_buffered(self, data: bytes, records: list) -> int:
        """Completes the record begun in an earlier read; returns where `data`
        goes on, or -1 when all of it went into the buffer."""
        buf = self._buf
        pos = 0
        if len(buf) < HEADER_LEN:
            pos = min(HEADER_LEN - len(buf), len(data))
            buf += memoryview(data)[:pos]
            if len(buf) < HEADER_LEN:
                return -1
        version, rtype, request_id, length, padding = HEADER.unpack_from(buf)
        if version != FCGI_VERSION_1:
            raise ProtocolError(f"unsupported FastCGI version {version} (record type {rtype})")
        missing = HEADER_LEN + length + padding - len(buf)
        if len(data) - pos < missing:
            buf += memoryview(data)[pos:]
            return -1
        buf += memoryview(data)[pos : pos + missing]
        records.append((rtype, request_id, bytes(buf[HEADER_LEN : HEADER_LEN + length])))
        buf.clear()
        return pos + missing


# --- events ---------------------------------------------------------------------

# The application side's events are made for every request. They are not frozen:
# a frozen dataclass's __init__ sets each field through object.__setattr__ (the
# figures are in docs/bench.md). Nothing changes them once made; unsafe_hash keeps
# them hashable, as frozen ones were.


@dataclass(slots=True, unsafe_hash=True)
class RequestBegun:
    request_id: int
    role: int
    keep_conn: bool


@dataclass(slots=True, unsafe_hash=True)
class ParamsReceived:
    request_id: int
    params: dict[str, str]


@dataclass(slots=True, unsafe_hash=True)
class StdinReceived:
    request_id: int
    data: bytes  # b"" marks the end of stdin


@dataclass(slots=True, unsafe_hash=True)
class DataReceived:
    request_id: int
    data: bytes  # b"" marks the end of the data stream


@dataclass(slots=True, unsafe_hash=True)
class RequestAborted:
    request_id: int


class WholeRequest(tuple):
    """A body-less request that came whole in one read (nginx's usual GET): what
    RequestBegun, ParamsReceived and an empty StdinReceived say, as one event,
    `(request_id, keep_conn, params)`.

    Made for nearly every request, so it is a tuple made by tuple's own
    constructor (no __init__ frame, see docs/bench.md) and read by unpacking."""

    __slots__ = ()

    request_id: int = property(itemgetter(0))  # type: ignore[assignment]
    keep_conn: bool = property(itemgetter(1))  # type: ignore[assignment]
    params: dict[str, str] = property(itemgetter(2))  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"WholeRequest(request_id={self[0]!r}, keep_conn={self[1]!r}, params={self[2]!r})"

    def events(self) -> list:
        """The same request as the record-by-record path gives it."""
        request_id, keep_conn, params = self
        return [RequestBegun(request_id, FCGI_RESPONDER, keep_conn), ParamsReceived(request_id, params),
                StdinReceived(request_id, b"")]


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """Client side: one stream record or the end of a request."""

    request_id: int
    stdout: bytes = b""
    stderr: bytes = b""
    ended: bool = False
    app_status: int = 0
    protocol_status: int = FCGI_REQUEST_COMPLETE


@dataclass(frozen=True, slots=True)
class ValuesReceived:
    """Client side: the application's FCGI_GET_VALUES_RESULT."""

    values: dict[bytes, bytes]


@dataclass(frozen=True, slots=True)
class UnknownTypeReceived:
    """Client side: the application's FCGI_UNKNOWN_TYPE, naming a record type it does not know."""

    record_type: int


# --- the application side -------------------------------------------------------

_NONE_REFUSED: frozenset[int] = frozenset()


class ServerConnection:
    """The application's side of one transport connection.

    It does not multiplex: one request at a time, as FCGI_MPXS_CONNS=0 tells the
    web server; a second BEGIN_REQUEST while one is active gets FCGI_CANT_MPX_CONN.
    A refused request (that, or a role not served) may still have its PARAMS and
    STDIN on the way: they are skipped until its STDIN ends, and the connection
    goes on carrying other requests.
    """

    MAX_REFUSED = 16  # refused requests whose input may still arrive; past it, a broken peer

    # The state of a connection between requests, as class attributes: a new
    # connection (one per request without FCGI_KEEP_CONN) stores none of them
    # until it changes them (see docs/bench.md, issue 16).
    _reader: RecordReader | None = None  # made when a read is not one whole request
    _limits = (1, 1)  # for GET_VALUES, which nginx never sends: encoded then
    _roles: frozenset[int] = frozenset({FCGI_RESPONDER})
    _params_limit = DEFAULT_PARAMS_LIMIT
    # Records the protocol answered on its own (management, refusals; rare): the
    # caller sends them (`take_output()`) when this is not empty.
    output = b""
    request_id: int | None = None  # the active request
    keep_conn = False
    _params: list[bytes] | None = None
    _params_size = 0
    _stdin_open = False
    _data_open = False
    # The shared empty frozenset until a request is refused: then a set of our own.
    _refused: set[int] = _NONE_REFUSED  # type: ignore[assignment]
    _aborted_id: int | None = None  # the last request ended by ABORT_REQUEST
    # A role refused without FCGI_KEEP_CONN: after its END_REQUEST the
    # application closes the connection (spec 3.5).
    close_requested = False

    def __init__(
        self,
        max_conns: int = 1,
        max_reqs: int = 1,
        roles: frozenset[int] | None = None,
        params_limit: int = DEFAULT_PARAMS_LIMIT,
    ) -> None:
        if max_conns != 1 or max_reqs != 1:
            self._limits = (max_conns, max_reqs)
        if roles is not None:
            self._roles = frozenset(roles)
        if params_limit != DEFAULT_PARAMS_LIMIT:
            self._params_limit = params_limit

    # incoming

    def receive(self, data: bytes) -> list:
        """The events in one read from the web server: one event per record that
        concerns the application (`_receive_records`), or a single WholeRequest for
        the usual read from nginx: exactly BEGIN_REQUEST (RESPONDER), all of PARAMS
        and an empty STDIN (a request without a body), nothing before or after, on
        a connection between requests. That one is taken in one pass (the same
        checks; the record path takes anything else, nothing consumed before).
        Records the protocol answers on its own (GET_VALUES, unknown types,
        refusals) wait in `output`."""
        end = len(data)
        if end < _SMALLEST_WHOLE_REQUEST or self.request_id is not None or self._refused \
                or (self._reader is not None and self._reader.buffered) or type(data) is not bytes:
            return self._receive_records(data)
        (version, rtype, request_id, length, padding, role, flags,
         version2, rtype2, rid, length2, padding2) = _BEGIN_AND_NEXT_HEADER.unpack_from(data)
        if (version, rtype, length, padding, role) != _RESPONDER_BEGIN or role not in self._roles \
                or request_id == FCGI_NULL_REQUEST_ID or request_id == self._aborted_id \
                or data[-_INPUTS_END_LEN:] != _inputs_end(request_id):
            return self._receive_records(data)
        params_end = end - _INPUTS_END_LEN
        if _FIRST_PARAMS_AT + length2 + padding2 == params_end and length2 and rtype2 == FCGI_PARAMS \
                and rid == request_id and version2 == FCGI_VERSION_1:
            body = data[_FIRST_PARAMS_AT : _FIRST_PARAMS_AT + length2]  # one PARAMS record: nginx's usual
        else:
            records = _params_records(data, request_id, _BEGIN_RECORD.size, params_end)
            if records is None:
                return self._receive_records(data)
            body = records
        if len(body) > self._params_limit:
            return self._receive_records(data)  # which says why
        params = decode_params_text(body)
        keep_conn = flags & FCGI_KEEP_CONN != 0
        self.request_id = request_id
        self.keep_conn = keep_conn
        self._params = None
        self._stdin_open = self._data_open = False
        return [WholeRequest((request_id, keep_conn, params))]

    def _receive_records(self, data: bytes) -> list:
        """The record-by-record path: one event per record for the application."""
        if self._reader is None:
            self._reader = RecordReader()
        events: list = []
        for rtype, request_id, content in self._reader.feed(data):
            if request_id == FCGI_NULL_REQUEST_ID:
                self._management_record(rtype, content)
            elif rtype == FCGI_BEGIN_REQUEST:
                event = self._begin(request_id, content)
                if event is not None:
                    events.append(event)
            elif request_id == self.request_id:
                event = self._request_record(rtype, request_id, content)
                if event is not None:
                    events.append(event)
            elif request_id in self._refused:
                if rtype == FCGI_STDIN and not content or rtype == FCGI_ABORT_REQUEST:
                    self._refused.discard(request_id)
            elif rtype == FCGI_ABORT_REQUEST:
                pass  # the request ended before the abort reached us: it crossed our END_REQUEST
            elif request_id == self._aborted_id:
                pass  # input of an aborted request that was already on its way
            else:
                raise ProtocolError(f"record type {rtype} for request {request_id}, which is not active")
        return events

    def _refuse(self, request_id: int, protocol_status: int) -> None:
        if len(self._refused) >= self.MAX_REFUSED:
            raise ProtocolError(f"{len(self._refused)} refused requests still sending input")
        if self._refused is _NONE_REFUSED:
            self._refused = set()
        self._refused.add(request_id)
        self.output += encode_end_request(request_id, 0, protocol_status)

    def skip_rest_of_input(self, request_id: int) -> None:
        """The request was answered (END_REQUEST sent) before its STDIN ended: the
        rest of its input is skipped until its empty STDIN record (or an abort), as
        for a refused request, and the connection then carries the next request."""
        if self._refused is _NONE_REFUSED:
            self._refused = set()
        self._refused.add(request_id)

    @property
    def skipping_input(self) -> bool:
        """Whether input of a request already answered is still to come (and be skipped)."""
        return bool(self._refused)

    def take_output(self) -> bytes:
        """Records the protocol answered on its own (management, rejections)."""
        out = self.output
        self.output = b""
        return out

    @property
    def buffered(self) -> int:
        """Bytes received but not yet a whole record (a truncated record at EOF)."""
        return self._reader.buffered if self._reader is not None else 0

    def _management_record(self, rtype: int, content: bytes) -> None:
        if rtype == FCGI_GET_VALUES:
            max_conns, max_reqs = self._limits
            values = {b"FCGI_MAX_CONNS": str(max_conns).encode(), b"FCGI_MAX_REQS": str(max_reqs).encode(),
                      b"FCGI_MPXS_CONNS": b"0"}
            asked = decode_params(content)
            answer = {name: values[name] for name, _ in asked if name in values}
            self.output += encode_record(FCGI_GET_VALUES_RESULT, 0, encode_params(answer))
        else:
            self.output += encode_record(FCGI_UNKNOWN_TYPE, 0, bytes((rtype,)) + bytes(7))

    def _begin(self, request_id: int, content: bytes) -> RequestBegun | None:
        if len(content) < BEGIN_BODY.size:
            raise ProtocolError(f"BEGIN_REQUEST body of {len(content)} bytes, expected 8")
        role, flags = BEGIN_BODY.unpack_from(content)
        keep_conn = bool(flags & FCGI_KEEP_CONN)
        if self.request_id is not None:
            if request_id == self.request_id:
                raise ProtocolError(f"BEGIN_REQUEST for request {request_id}, which is already active")
            self._refuse(request_id, FCGI_CANT_MPX_CONN)
            return None
        if request_id in self._refused:
            raise ProtocolError(f"BEGIN_REQUEST for request {request_id}, whose refused input has not ended")
        if role not in self._roles:
            self._refuse(request_id, FCGI_UNKNOWN_ROLE)
            self.keep_conn = keep_conn
            self.close_requested = not keep_conn
            return None
        if request_id == self._aborted_id:
            self._aborted_id = None
        self.request_id = request_id
        self.keep_conn = keep_conn
        self._params, self._params_size = [], 0
        self._stdin_open = True
        self._data_open = role == FCGI_FILTER
        return RequestBegun(request_id, role, keep_conn)

    def _request_record(self, rtype: int, request_id: int, content: bytes):
        if rtype == FCGI_PARAMS:
            return self._params_record(request_id, content)
        if rtype == FCGI_STDIN:
            if not self._stdin_open:
                raise ProtocolError(f"STDIN for request {request_id} after its end")
            if self._params is not None:
                raise ProtocolError(f"STDIN for request {request_id} before its params ended")
            self._stdin_open = bool(content)
            return StdinReceived(request_id, content)
        if rtype == FCGI_DATA:
            if not self._data_open:
                raise ProtocolError(f"DATA for request {request_id}, which takes none")
            self._data_open = bool(content)
            return DataReceived(request_id, content)
        if rtype == FCGI_ABORT_REQUEST:
            self._aborted_id = request_id
            return RequestAborted(request_id)
        raise ProtocolError(f"record type {rtype} is not one a web server sends (request {request_id})")

    def _params_record(self, request_id: int, content: bytes) -> ParamsReceived | None:
        if self._params is None:
            raise ProtocolError(f"PARAMS for request {request_id} after its end")
        if content:
            self._params_size += len(content)
            if self._params_size > self._params_limit:
                raise ProtocolError(f"params of request {request_id} exceed {self._params_limit} bytes")
            self._params.append(content)
            return None
        chunks = self._params
        self._params = None
        # Duplicate names: the last one wins, as when a web server overrides a default.
        params = decode_params_text(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        return ParamsReceived(request_id, params)

    # outgoing

    def stream(self, rtype: int, request_id: int, chunks: list[bytes]) -> list:
        """STDOUT or STDERR records carrying `chunks`, as buffers to send in order
        (sendmsg, or joined): small output as one buffer, big chunks framed in place."""
        return stream_buffers(rtype, request_id, chunks)

    def end_request(self, request_id: int, app_status: int = 0, protocol_status: int = FCGI_REQUEST_COMPLETE,
                    stdout: list[bytes] | None = None, stderr: list[bytes] | None = None) -> list:
        """The rest of the output (if any), the end of both streams and END_REQUEST,
        as buffers to send in order: one buffer unless the output is big. The
        connection may then take another request."""
        if request_id == self.request_id:
            self.request_id = None
            self._params = None
            self._stdin_open = self._data_open = False
        end = _end_records(request_id, app_status, protocol_status)
        if not stderr:
            if not stdout:
                return [end]
            if len(stdout) == 1 and (length := len(data := stdout[0])) <= MAX_CONTENT:
                # The usual case, a small body written at once: one record, one buffer.
                padding = -length & 7
                return [b"".join((HEADER.pack(FCGI_VERSION_1, FCGI_STDOUT, request_id, length, padding), data,
                                  _PADDING[:padding], end))]
        buffers = stream_buffers(FCGI_STDOUT, request_id, stdout) if stdout else []
        if stderr:
            buffers += stream_buffers(FCGI_STDERR, request_id, stderr)
        buffers.append(end)
        if len(buffers) <= 3:  # each stream fit one record: one small buffer
            return [b"".join(buffers)]
        return buffers


# Output chunks at least this big are framed in place (record headers around
# memoryview slices, for one sendmsg) instead of being copied into records.
ZERO_COPY_MIN = 32 * 1024


def stream_buffers(rtype: int, request_id: int, chunks: list[bytes]) -> list:
    """Stream records for `chunks` as a list of buffers (no end-of-stream record).

    Output that fits one record is one buffer; of bigger output, small chunks are
    joined into records and big ones framed in place, so a 1 MiB body is never
    copied on its way to the kernel.
    """
    if len(chunks) == 1:
        data = chunks[0]
        length = len(data)
        if not length:
            return []
        if length <= MAX_CONTENT:
            padding = -length & 7
            return [b"".join((HEADER.pack(FCGI_VERSION_1, rtype, request_id, length, padding), data,
                              _PADDING[:padding]))]
    buffers: list = []
    small: list[bytes] = []
    for chunk in chunks:
        if len(chunk) < ZERO_COPY_MIN:
            small.append(chunk)
            continue
        if small:
            buffers += _records(rtype, request_id, b"".join(small))
            small = []
        buffers += _records(rtype, request_id, chunk)
    if small:
        buffers += _records(rtype, request_id, b"".join(small))
    return buffers


def _records(rtype: int, request_id: int, data: bytes) -> list:
    """Records of `data` as buffers: a record that fits is one joined buffer; a big
    `data` is framed in place, its content as memoryview slices."""
    length = len(data)
    if length <= MAX_CONTENT:
        if not length:
            return []
        padding = -length & 7
        return [b"".join((HEADER.pack(FCGI_VERSION_1, rtype, request_id, length, padding), data, _PADDING[:padding]))]
    view = memoryview(data)
    pack = HEADER.pack
    out: list = []
    for start in range(0, length, MAX_CONTENT):
        piece = view[start : start + MAX_CONTENT]
        size = len(piece)
        padding = -size & 7
        out.append(pack(FCGI_VERSION_1, rtype, request_id, size, padding))
        out.append(piece)
        if padding:
            out.append(_PADDING[:padding])
    return out


@functools.lru_cache(maxsize=256)
def _inputs_end(request_id: int) -> bytes:
    """The empty PARAMS and empty STDIN records (unpadded) that end a body-less request's input."""
    return encode_record(FCGI_PARAMS, request_id) + encode_record(FCGI_STDIN, request_id)


_INPUTS_END_LEN = 2 * HEADER_LEN
_FIRST_PARAMS_AT = _BEGIN_RECORD.size + HEADER_LEN  # the content of the first PARAMS record


def _params_records(data: bytes, request_id: int, pos: int, stop: int) -> bytes | None:
    """The content of the non-empty PARAMS records of `request_id` that fill data[pos:stop]
    exactly; None when anything else is there (the record path takes it)."""
    chunks = []
    while pos < stop:
        version, rtype, rid, length, padding = HEADER.unpack_from(data, pos)
        if rtype != FCGI_PARAMS or rid != request_id or version != FCGI_VERSION_1 or not length:
            return None
        pos += HEADER_LEN
        chunks.append(data[pos : pos + length])
        pos += length + padding
    if pos != stop or not chunks:
        return None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@functools.lru_cache(maxsize=256)
def _end_records(request_id: int, app_status: int, protocol_status: int) -> bytes:
    # The same few bytes end nearly every request (id 1, status 0): built once.
    return b"".join(
        (
            encode_record(FCGI_STDOUT, request_id),
            encode_record(FCGI_STDERR, request_id),
            encode_end_request(request_id, app_status, protocol_status),
        )
    )


# --- the web server side (tests, probes, health checks) ---------------------------


class ClientConnection:
    """The web server's side: builds requests, turns response records into events."""

    def __init__(self) -> None:
        self._reader = RecordReader()

    def request(
        self,
        request_id: int,
        params,
        stdin: bytes = b"",
        role: int = FCGI_RESPONDER,
        keep_conn: bool = False,
    ) -> bytes:
        body = encode_params(params)
        return b"".join(
            (
                encode_begin_request(request_id, role, keep_conn),
                encode_stream(FCGI_PARAMS, request_id, body),
                encode_record(FCGI_PARAMS, request_id),
                encode_stream(FCGI_STDIN, request_id, stdin),
                encode_record(FCGI_STDIN, request_id),
            )
        )

    def get_values(self, names) -> bytes:
        return encode_record(FCGI_GET_VALUES, 0, encode_params({name: b"" for name in names}))

    def receive(self, data: bytes) -> list:
        """The events in one read from the application: ResponseReceived for its
        streams and END_REQUEST, ValuesReceived, UnknownTypeReceived."""
        events: list = []
        for rtype, request_id, content in self._reader.feed(data):
            if rtype == FCGI_STDOUT:
                events.append(ResponseReceived(request_id, stdout=content))
            elif rtype == FCGI_STDERR:
                events.append(ResponseReceived(request_id, stderr=content))
            elif rtype == FCGI_END_REQUEST:
                if len(content) < END_BODY.size:
                    raise ProtocolError(f"END_REQUEST body of {len(content)} bytes, expected 8")
                app_status, protocol_status = END_BODY.unpack_from(content)
                events.append(ResponseReceived(request_id, ended=True, app_status=app_status,
                                               protocol_status=protocol_status))
            elif rtype == FCGI_GET_VALUES_RESULT:
                events.append(ValuesReceived(dict(decode_params(content))))
            elif rtype == FCGI_UNKNOWN_TYPE:
                if not content:
                    raise ProtocolError("UNKNOWN_TYPE record without a body")
                events.append(UnknownTypeReceived(content[0]))
            else:
                raise ProtocolError(f"record type {rtype} is not one an application sends")
        return events
