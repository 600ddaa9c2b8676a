"""ServerConnection.receive reads a whole body-less request from one read in one
pass (a WholeRequest event); everything else takes the record-by-record path. On
the same bytes, both must give the same events (a WholeRequest standing for the
three the record path gives), leave the same state, and fail with the same error."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fcgikit.fastcgi import ClientConnection, ProtocolError, ServerConnection, WholeRequest
from fcgikit.fastcgi.protocol import (
    FCGI_AUTHORIZER,
    FCGI_BEGIN_REQUEST,
    FCGI_FILTER,
    FCGI_PARAMS,
    FCGI_STDIN,
    encode_begin_request,
    encode_params,
    encode_record,
    encode_stream,
)

names = st.text(st.characters(min_codepoint=1, max_codepoint=255), min_size=1, max_size=140)
values = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=300)


class RecordByRecord(ServerConnection):
    def receive(self, data):
        return self._receive_records(data)


def as_records(events: list) -> list:
    """A WholeRequest as the three events the record path gives for it."""
    out = []
    for event in events:
        out += event.events() if type(event) is WholeRequest else [event]
    return out


def outcome(feeds, make=ServerConnection):
    """Events (or the error) and the state after feeding each piece in turn."""
    conn = make(max_conns=8, max_reqs=1)
    events = []
    try:
        for piece in feeds:
            events += as_records(conn.receive(piece))
    except ProtocolError as exc:
        return ("error", str(exc)), None
    state = (conn.request_id, conn.keep_conn, conn.buffered, conn.take_output(), conn.close_requested)
    return events, state


def one_read_vs_bytewise(data: bytes):
    one_pass = outcome([data])
    assert one_pass == outcome([data], RecordByRecord)
    # Byte by byte, no read holds a whole request: the same events, or an error too.
    bytewise = outcome([data[i : i + 1] for i in range(len(data))])
    assert bytewise == one_pass or "error" in (one_pass[0][0], bytewise[0][0])
    return one_pass


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(names, values, max_size=30), st.integers(1, 65535), st.booleans(), st.randoms())
def test_a_whole_request_in_one_read_gives_what_the_record_path_gives(params, request_id, keep_conn, rng):
    data = ClientConnection().request(request_id, params, b"", keep_conn=keep_conn)
    if rng.random() < 0.5:  # PARAMS split over several records, as long params are
        body = encode_params(params)
        cut = rng.randint(0, len(body))
        data = b"".join((encode_begin_request(request_id, keep_conn=keep_conn),
                         encode_record(FCGI_PARAMS, request_id, body[:cut]) if cut else b"",
                         encode_stream(FCGI_PARAMS, request_id, body[cut:]),
                         encode_record(FCGI_PARAMS, request_id), encode_record(FCGI_STDIN, request_id)))
    if params:  # the fast path was taken (no params: only the empty PARAMS record, left to the record path)
        assert [type(e) for e in ServerConnection().receive(data)] == [WholeRequest]
    events, state = one_read_vs_bytewise(data)
    begun, received, stdin_end = events
    assert (begun.request_id, begun.keep_conn) == (request_id, keep_conn)
    assert received.params == params  # latin-1 both ways
    assert stdin_end.data == b"" and state[0] == request_id


def test_what_the_one_pass_declines_still_gives_the_same_answer():
    rid = 7
    begin = encode_begin_request(rid)
    params = encode_record(FCGI_PARAMS, rid, encode_params({"A": "1"})) + encode_record(FCGI_PARAMS, rid)
    stdin_end = encode_record(FCGI_STDIN, rid)
    cases = [
        begin + params + encode_record(FCGI_STDIN, rid, b"body") + stdin_end,  # a body
        begin + params + stdin_end + begin,  # more after the request: a second BEGIN (CANT_MPX)
        begin + params,  # stdin not ended yet
        encode_begin_request(rid, role=FCGI_AUTHORIZER) + params + stdin_end,  # a role not served
        encode_begin_request(rid, role=FCGI_FILTER) + params + stdin_end,
        encode_begin_request(0) + params + stdin_end,  # the null request id
        begin + encode_record(FCGI_PARAMS, rid + 1, b"x") + stdin_end,  # another request's params
        begin + params + encode_record(FCGI_STDIN, rid + 1),  # another request's stdin
        bytes([2]) + begin[1:] + params + stdin_end,  # version 2
        begin + encode_record(FCGI_PARAMS, rid, b"\x05\x01ab") + encode_record(FCGI_PARAMS, rid) + stdin_end,
        begin[:8] + begin[8:] + begin[:6] + params + stdin_end,  # garbage in the middle
        encode_record(FCGI_BEGIN_REQUEST, rid, b"\x00\x01") + params + stdin_end,  # short BEGIN body
    ]
    for data in cases:
        one_read_vs_bytewise(data)


@pytest.mark.parametrize("seed", range(4))
def test_random_damage_to_a_whole_request_gives_the_same_answer_both_ways(seed):
    rng = random.Random(seed)
    good = ClientConnection().request(3, {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/x"}, b"", keep_conn=True)
    for _ in range(300):
        data = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        one_read_vs_bytewise(bytes(data))


def test_the_params_limit_holds_on_the_one_pass_too():
    data = ClientConnection().request(1, {"BIG": "x" * 5000}, b"")
    conn = ServerConnection(params_limit=1000)
    with pytest.raises(ProtocolError, match="exceed 1000 bytes"):
        conn.receive(data)
