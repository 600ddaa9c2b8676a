"""The FastCGI wire protocol, byte for byte, with no sockets."""

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fcgikit.fastcgi import (
    FCGI_ABORT_REQUEST,
    FCGI_AUTHORIZER,
    FCGI_BEGIN_REQUEST,
    FCGI_CANT_MPX_CONN,
    FCGI_DATA,
    FCGI_END_REQUEST,
    FCGI_FILTER,
    FCGI_GET_VALUES,
    FCGI_GET_VALUES_RESULT,
    FCGI_PARAMS,
    FCGI_STDIN,
    FCGI_STDOUT,
    FCGI_UNKNOWN_ROLE,
    FCGI_UNKNOWN_TYPE,
    MAX_CONTENT,
    ClientConnection,
    DataReceived,
    ParamsReceived,
    ProtocolError,
    RecordReader,
    RequestAborted,
    RequestBegun,
    ServerConnection,
    StdinReceived,
    UnknownTypeReceived,
    ValuesReceived,
    WholeRequest,
    decode_params,
    encode_begin_request,
    encode_params,
    encode_record,
    encode_stream,
)
from fcgikit.fastcgi.client import get_params, parse_cgi_response
from fcgikit.fastcgi.protocol import decode_params_text


def records(data: bytes):
    return RecordReader().feed(data)


def as_records(events: list) -> list:
    """A WholeRequest as the three events the record path gives for it."""
    out = []
    for event in events:
        out += event.events() if type(event) is WholeRequest else [event]
    return out


def feed_request(conn, request_id=1, params=None, stdin=b"", keep_conn=False):
    wire = ClientConnection().request(request_id, params or get_params("/"), stdin, keep_conn=keep_conn)
    return as_records(conn.receive(wire))


# --- records -------------------------------------------------------------------


def test_record_is_padded_to_eight_bytes():
    wire = encode_record(FCGI_STDOUT, 7, b"abc")
    assert len(wire) == 16
    version, rtype, rid, length, padding = struct.unpack("!BBHHBx", wire[:8])
    assert (version, rtype, rid, length, padding) == (1, FCGI_STDOUT, 7, 3, 5)
    assert wire[8:11] == b"abc" and wire[11:] == bytes(5)


def test_long_output_is_split_into_records_strict_peers_accept():
    data = bytes(range(256)) * 1000  # 256000 bytes
    wire = encode_stream(FCGI_STDOUT, 1, data)
    got = records(wire)
    assert b"".join(content for _, _, content in got) == data
    assert all(len(content) <= MAX_CONTENT for _, _, content in got)
    # php-fpm's reader refuses content + padding > 65535: check every header.
    pos = 0
    while pos < len(wire):
        _, _, _, length, padding = struct.unpack_from("!BBHHBx", wire, pos)
        assert length + padding <= 65535
        pos += 8 + length + padding


def test_empty_stream_data_emits_no_record_because_that_would_end_the_stream():
    assert encode_stream(FCGI_STDOUT, 1, b"") == b""


def test_reader_waits_for_a_whole_record():
    wire = encode_record(FCGI_STDOUT, 1, b"hello")
    reader = RecordReader()
    assert reader.feed(wire[:5]) == []
    assert reader.feed(wire[5:12]) == []
    assert reader.feed(wire[12:]) == [(FCGI_STDOUT, 1, b"hello")]
    assert reader.buffered == 0


def test_wrong_version_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="version"):
        records(b"\x02" + encode_record(FCGI_STDOUT, 1, b"x")[1:])


# --- name-value pairs -----------------------------------------------------------


def test_params_use_one_byte_lengths_below_128_and_four_bytes_above():
    short = encode_params({"A": "b"})
    assert short == b"\x01\x01Ab"
    long_value = "v" * 200
    wire = encode_params({"NAME": long_value})
    assert wire[0] == 4 and wire[1] & 0x80
    assert struct.unpack("!I", wire[1:5])[0] & 0x7FFFFFFF == 200
    assert decode_params(wire) == [(b"NAME", long_value.encode())]


def test_params_values_over_64k_arrive_whole():
    big = "x" * 200_000
    conn = ServerConnection()
    events = feed_request(conn, params={"HTTP_COOKIE": big, "REQUEST_METHOD": "GET"})
    params = next(e for e in events if isinstance(e, ParamsReceived)).params
    assert params["HTTP_COOKIE"] == big


def test_duplicate_params_last_one_wins():
    wire = encode_params([(b"X", b"first"), (b"X", b"second")])
    conn = ServerConnection()
    conn.receive(encode_begin_request(1))
    events = conn.receive(encode_record(FCGI_PARAMS, 1, wire) + encode_record(FCGI_PARAMS, 1))
    assert events == [ParamsReceived(1, {"X": "second"})]


def test_params_are_latin1_so_any_byte_survives():
    conn = ServerConnection()
    conn.receive(encode_begin_request(1))
    events = conn.receive(encode_record(FCGI_PARAMS, 1, encode_params([(b"Q", b"\xc3\xa9\xff")]))
                       + encode_record(FCGI_PARAMS, 1))
    assert events[0].params["Q"].encode("latin-1") == b"\xc3\xa9\xff"


def test_a_length_claiming_gigabytes_is_an_error_not_an_allocation():
    hostile = b"\x81\x00\x00\x00" + b"\xff\xff\xff\xff" + b"ab"
    with pytest.raises(ProtocolError, match="claims"):
        decode_params(hostile)


def test_params_beyond_the_limit_are_refused():
    conn = ServerConnection(params_limit=1000)
    conn.receive(encode_begin_request(1))
    with pytest.raises(ProtocolError, match="exceed"):
        conn.receive(encode_stream(FCGI_PARAMS, 1, encode_params({"A": "x" * 2000})))


# --- the application side -------------------------------------------------------


def test_a_whole_request_becomes_events():
    conn = ServerConnection()
    events = feed_request(conn, params={"REQUEST_METHOD": "POST"}, stdin=b"body", keep_conn=True)
    assert events == [
        RequestBegun(1, 1, True),
        ParamsReceived(1, {"REQUEST_METHOD": "POST"}),
        StdinReceived(1, b"body"),
        StdinReceived(1, b""),
    ]
    assert conn.keep_conn


def test_response_ends_both_streams_then_the_request():
    conn = ServerConnection()
    feed_request(conn)
    wire = b"".join(conn.stream(FCGI_STDOUT, 1, [b"Content-Type: text/plain\r\n\r\nhi"]))
    wire += b"".join(conn.end_request(1, app_status=3))
    got = records(wire)
    assert [r[0] for r in got] == [FCGI_STDOUT, FCGI_STDOUT, 7, FCGI_END_REQUEST]
    assert got[1][2] == b"" and got[2][2] == b""
    app_status, protocol_status = struct.unpack("!IB3x", got[3][2])
    assert (app_status, protocol_status) == (3, 0)
    assert conn.request_id is None


def test_keep_conn_lets_one_connection_carry_many_requests():
    conn = ServerConnection()
    for request_id in (1, 2, 3):
        events = feed_request(conn, request_id=request_id, keep_conn=True)
        assert events[0] == RequestBegun(request_id, 1, True)
        conn.end_request(request_id)
    assert conn.keep_conn


def test_get_values_is_answered_truthfully():
    conn = ServerConnection(max_conns=10, max_reqs=10)
    assert conn.receive(ClientConnection().get_values(["FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS", "OTHER"])) == []
    (rtype, rid, content), = records(conn.take_output())
    assert (rtype, rid) == (FCGI_GET_VALUES_RESULT, 0)
    assert dict(decode_params(content)) == {b"FCGI_MAX_CONNS": b"10", b"FCGI_MAX_REQS": b"10", b"FCGI_MPXS_CONNS": b"0"}


def test_unknown_management_type_gets_unknown_type():
    conn = ServerConnection()
    conn.receive(encode_record(42, 0, b""))
    (rtype, rid, content), = records(conn.take_output())
    assert (rtype, rid, content[0]) == (FCGI_UNKNOWN_TYPE, 0, 42)


def test_the_client_reads_management_answers_as_typed_events():
    server = ServerConnection(max_conns=10, max_reqs=1)
    server.receive(ClientConnection().get_values(["FCGI_MAX_CONNS", "FCGI_MPXS_CONNS"]) + encode_record(42, 0, b""))
    assert ClientConnection().receive(server.take_output()) == [
        ValuesReceived({b"FCGI_MAX_CONNS": b"10", b"FCGI_MPXS_CONNS": b"0"}),
        UnknownTypeReceived(42),
    ]


@pytest.mark.parametrize("role", [FCGI_AUTHORIZER, FCGI_FILTER, 99])
def test_a_role_not_served_gets_unknown_role(role):
    conn = ServerConnection()
    assert conn.receive(encode_begin_request(5, role)) == []
    (rtype, rid, content), = records(conn.take_output())
    assert (rtype, rid) == (FCGI_END_REQUEST, 5)
    assert content[4] == FCGI_UNKNOWN_ROLE


def test_a_refused_request_still_sending_its_input_does_not_break_the_connection():
    conn = ServerConnection()
    wire = ClientConnection().request(6, {"A": "b"}, b"body", role=FCGI_AUTHORIZER, keep_conn=True)
    assert conn.receive(wire) == []
    (rtype, rid, content), = records(conn.take_output())
    assert (rtype, rid, content[4]) == (FCGI_END_REQUEST, 6, FCGI_UNKNOWN_ROLE)
    events = feed_request(conn, request_id=7, keep_conn=True)
    assert events[0] == RequestBegun(7, 1, True)


def test_input_of_a_request_refused_while_busy_is_skipped():
    conn = ServerConnection()
    feed_request(conn, request_id=1, keep_conn=True)
    assert conn.receive(ClientConnection().request(2, {"A": "b"}, b"x")) == []
    (rtype, rid, content), = records(conn.take_output())
    assert (rid, content[4]) == (2, FCGI_CANT_MPX_CONN)
    assert conn.request_id == 1


def test_a_peer_piling_up_refused_requests_is_cut_off():
    conn = ServerConnection()
    feed_request(conn, request_id=1, keep_conn=True)
    with pytest.raises(ProtocolError, match="refused requests"):
        for request_id in range(2, 40):
            conn.receive(encode_begin_request(request_id))


def test_filter_role_when_served_delivers_data_stream():
    conn = ServerConnection(roles=frozenset({FCGI_FILTER}))
    conn.receive(encode_begin_request(1, FCGI_FILTER) + encode_record(FCGI_PARAMS, 1) + encode_record(FCGI_STDIN, 1))
    assert conn.receive(encode_record(FCGI_DATA, 1, b"file")) == [DataReceived(1, b"file")]


def test_a_second_request_on_a_busy_connection_gets_cant_mpx_conn():
    conn = ServerConnection()
    feed_request(conn, request_id=1, keep_conn=True)
    assert conn.receive(encode_begin_request(2)) == []
    (rtype, rid, content), = records(conn.take_output())
    assert (rtype, rid, content[4]) == (FCGI_END_REQUEST, 2, FCGI_CANT_MPX_CONN)
    assert conn.request_id == 1


def test_abort_request_is_an_event():
    conn = ServerConnection()
    conn.receive(encode_begin_request(1))
    assert conn.receive(encode_record(FCGI_ABORT_REQUEST, 1)) == [RequestAborted(1)]


def test_an_abort_that_crossed_the_end_request_is_ignored():
    conn = ServerConnection()
    feed_request(conn, request_id=1, keep_conn=True)
    conn.end_request(1)
    assert conn.receive(encode_record(FCGI_ABORT_REQUEST, 1)) == []
    assert feed_request(conn, request_id=1, keep_conn=True)[0] == RequestBegun(1, 1, True)


def test_input_of_an_aborted_request_still_on_its_way_is_skipped():
    conn = ServerConnection()
    conn.receive(encode_begin_request(3, keep_conn=True) + encode_record(FCGI_PARAMS, 3))
    assert conn.receive(encode_record(FCGI_ABORT_REQUEST, 3)) == [RequestAborted(3)]
    conn.end_request(3)
    assert conn.receive(encode_record(FCGI_STDIN, 3, b"late") + encode_record(FCGI_STDIN, 3)) == []
    assert feed_request(conn, request_id=4, keep_conn=True)[0] == RequestBegun(4, 1, True)


@pytest.mark.parametrize("keep_conn", [True, False])
def test_a_role_refused_without_keep_conn_asks_to_close_the_connection(keep_conn):
    conn = ServerConnection()
    conn.receive(encode_begin_request(5, FCGI_AUTHORIZER, keep_conn=keep_conn))
    assert conn.close_requested is (not keep_conn)


@pytest.mark.parametrize(
    "wire, message",
    [
        (encode_record(FCGI_STDIN, 9, b"x"), "not active"),
        (encode_record(FCGI_BEGIN_REQUEST, 1, b"\x00\x01"), "expected 8"),
        (encode_begin_request(1) + encode_record(FCGI_STDIN, 1, b"x"), "before its params ended"),
        (encode_begin_request(1) + encode_record(FCGI_STDOUT, 1, b"x"), "not one a web server sends"),
        (encode_begin_request(1) + encode_record(FCGI_DATA, 1, b"x"), "takes none"),
        (encode_begin_request(1) + encode_begin_request(1), "already active"),
    ],
)
def test_broken_sequences_are_protocol_errors(wire, message):
    with pytest.raises(ProtocolError, match=message):
        ServerConnection().receive(wire)


def test_stdin_after_its_end_is_an_error():
    conn = ServerConnection()
    feed_request(conn)
    with pytest.raises(ProtocolError, match="after its end"):
        conn.receive(encode_record(FCGI_STDIN, 1, b"late"))


# --- client helpers ---------------------------------------------------------------


def test_cgi_response_parsing():
    status, headers, body = parse_cgi_response(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope")
    assert (status, headers, body) == (404, [("Content-Type", "text/plain")], b"nope")
    assert parse_cgi_response(b"Location: http://x/\n\n")[0] == 302


# --- properties -------------------------------------------------------------------

names = st.binary(min_size=1, max_size=300)
values = st.binary(max_size=70_000)


@given(st.lists(st.tuples(names, values), max_size=8))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_params_roundtrip(pairs):
    assert decode_params(encode_params(pairs)) == pairs


@given(st.binary(max_size=300_000), st.integers(1, 65535))
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
def test_stream_roundtrip(data, request_id):
    got = records(encode_stream(FCGI_STDOUT, request_id, data))
    assert b"".join(c for _, _, c in got) == data
    assert all(rid == request_id for _, rid, _ in got)


@given(
    st.dictionaries(st.text(min_size=1, max_size=40), st.text(max_size=200), max_size=10),
    st.binary(max_size=200_000),
    st.integers(1, 65535),
    st.lists(st.integers(1, 5000), max_size=20),
)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_a_request_fed_in_any_chunks_gives_the_same_events(params, stdin, request_id, cuts):
    params = {k.encode("utf-8").decode("latin-1"): v.encode("utf-8").decode("latin-1") for k, v in params.items()}
    wire = ClientConnection().request(request_id, params, stdin, keep_conn=True)
    conn = ServerConnection()
    events, pos = [], 0
    for size in cuts:
        events += as_records(conn.receive(wire[pos : pos + size]))
        pos += size
    events += as_records(conn.receive(wire[pos:]))
    assert events[0] == RequestBegun(request_id, 1, True)
    assert events[1] == ParamsReceived(request_id, params)
    assert b"".join(e.data for e in events[2:]) == stdin
    assert events[-1] == StdinReceived(request_id, b"")


@given(st.one_of(st.binary(max_size=600),
                 st.lists(st.tuples(names, st.binary(max_size=300)), max_size=6).map(encode_params)))
@settings(max_examples=300)
def test_the_fast_params_decoder_agrees_with_the_reference_one(body):
    try:
        expected = {n.decode("latin-1"): v.decode("latin-1") for n, v in decode_params(body)}
    except ProtocolError:
        with pytest.raises(ProtocolError):
            decode_params_text(body)
        return
    assert decode_params_text(body) == expected


_ascii = st.binary(max_size=300).map(lambda b: bytes(c & 0x7F for c in b))


@given(st.one_of(_ascii.map(lambda b: b[:600]),
                 st.lists(st.tuples(_ascii.filter(bool).map(lambda b: b[:40]), _ascii), max_size=25).map(encode_params)))
@settings(max_examples=300)
def test_the_ascii_params_path_agrees_with_the_reference_one(body):
    """Bodies without a byte above 127 (nginx's usual params) take a loop of their
    own: the same answers and the same errors (truncated lengths, pairs past the end)."""
    assert body.isascii()
    try:
        expected = {n.decode("latin-1"): v.decode("latin-1") for n, v in decode_params(body)}
    except ProtocolError:
        with pytest.raises(ProtocolError):
            decode_params_text(body)
        return
    assert decode_params_text(body) == expected


@given(st.binary(max_size=4000))
@settings(max_examples=300)
def test_random_bytes_give_events_or_a_protocol_error_never_anything_else(garbage):
    conn = ServerConnection(params_limit=64 * 1024)
    try:
        conn.receive(garbage)
        conn.take_output()
    except ProtocolError:
        pass
    # Whatever was not a whole record is all that is held.
    assert conn.buffered <= len(garbage)


@given(st.binary(min_size=1, max_size=2000), st.integers(0, 7))
@settings(max_examples=200)
def test_hostile_records_after_a_valid_begin_never_escape_as_other_errors(content, rtype_index):
    rtype = [FCGI_PARAMS, FCGI_STDIN, FCGI_DATA, FCGI_GET_VALUES, FCGI_BEGIN_REQUEST, FCGI_ABORT_REQUEST, 0, 200][rtype_index]
    conn = ServerConnection()
    conn.receive(encode_begin_request(1))
    try:
        conn.receive(encode_record(rtype, 1, content) + encode_record(FCGI_PARAMS, 1))
        conn.receive(encode_record(FCGI_GET_VALUES, 0, content))
    except ProtocolError:
        pass


@given(st.binary(max_size=3000), st.integers(1, 100))
@settings(max_examples=100)
def test_a_truncated_request_yields_no_false_end(stdin, cut):
    wire = ClientConnection().request(1, {"A": "b"}, stdin)
    conn = ServerConnection()
    events = conn.receive(wire[: max(0, len(wire) - cut)])
    assert StdinReceived(1, b"") not in events
