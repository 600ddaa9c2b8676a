"""Request streams without sockets: stdin pulled on demand, output batched."""

import pytest

from fcgikit.worker.connection import ClientGone
from fcgikit.worker.request import OUTPUT_FLUSH_SIZE

from .worker_fakes import make_request


def test_read_with_size_pulls_only_what_it_needs():
    request, conn = make_request(stdin_chunks=[b"abc", b"def", b"ghi"])
    assert request.stdin.read(2) == b"ab"
    assert conn.pulls == 1
    assert request.stdin.read(3) == b"cde"
    assert conn.pulls == 2
    assert request.stdin.read() == b"fghi"
    assert request.stdin.read() == b""
    assert request.stdin.at_eof


def test_readline_and_iteration_across_chunks():
    request, _ = make_request(stdin_chunks=[b"one\ntw", b"o\nthree"])
    assert request.stdin.readline() == b"one\n"
    assert list(request.stdin) == [b"two\n", b"three"]


def test_readline_with_limit_stops_at_the_limit():
    request, _ = make_request(stdin_chunks=[b"abcdef\n"])
    assert request.stdin.readline(4) == b"abcd"
    assert request.stdin.readline() == b"ef\n"


def test_readlines_and_read1():
    request, _ = make_request(stdin_chunks=[b"a\nb\n", b"c\n"])
    assert request.stdin.read1(1) == b"a"
    assert request.stdin.readlines() == [b"\n", b"b\n", b"c\n"]


def test_discard_rest_reads_to_the_end():
    request, conn = make_request(stdin_chunks=[b"x" * 10, b"y" * 10])
    request.stdin.discard_rest()
    assert request.stdin.at_eof and conn.stdin_chunks == []


def test_a_vanished_web_server_is_an_error_for_the_reader_not_a_short_body():
    request, _ = make_request(stdin_chunks=[b"partial"], stdin_error=True)
    assert request.stdin.read(7) == b"partial"
    with pytest.raises(ClientGone):
        request.stdin.read()


def test_small_writes_are_held_until_the_request_ends():
    request, conn = make_request()
    for _ in range(100):
        request.stdout.write(b"x" * 10)
    assert conn.stdout_sends == []
    request.finish(7)
    assert conn.ended == [(1, b"x" * 1000, b"", 7)]


def test_large_output_is_sent_as_it_grows():
    request, conn = make_request()
    request.stdout.write(b"a" * (OUTPUT_FLUSH_SIZE - 1))
    assert conn.stdout_sends == []
    request.stdout.write(b"bb")
    assert [len(s) for s in conn.stdout_sends] == [OUTPUT_FLUSH_SIZE + 1]


def test_flush_sends_now_and_write_after_finish_fails():
    request, conn = make_request()
    request.stdout.write(b"head")
    request.stdout.flush()
    assert conn.stdout_sends == [b"head"]
    request.finish()
    request.finish()  # idempotent
    assert len(conn.ended) == 1
    with pytest.raises(ValueError):
        request.stdout.write(b"late")


@pytest.mark.parametrize("used_before", [False, True])
def test_stderr_refuses_writes_after_finish_whether_or_not_it_was_used(used_before):
    request, conn = make_request()
    if used_before:
        request.stderr.write(b"early ")
    request.stdout.write(b"body")
    request.finish()
    with pytest.raises(ValueError):
        request.stderr.write(b"late")
    assert conn.stderr == (b"early " if used_before else b"")


def test_stderr_is_batched_too_and_accepts_bytearray():
    request, conn = make_request()
    request.stderr.write(bytearray(b"warn"))
    request.finish()
    assert conn.stderr == b"warn"


def test_environ_method_and_uri():
    request, _ = make_request({"REQUEST_METHOD": "POST", "REQUEST_URI": "/a?b"})
    assert request.environ is request.params
    assert (request.method, request.uri) == ("POST", "/a?b")


def test_client_gone_asks_the_connection():
    request, conn = make_request()
    assert not request.client_gone()
    conn.gone = True
    assert request.client_gone() and request.connection_lost


def test_abort_drops_the_connection_without_end_request():
    request, conn = make_request()
    request.abort("cut off")
    request.finish()
    assert conn.ended == [] and conn.reasons == ["cut off"]


def test_large_read_across_many_pieces_keeps_the_overshoot():
    pieces = [bytes([i]) * 1000 for i in range(50)]
    request, conn = make_request(stdin_chunks=list(pieces))
    data = b"".join(pieces)
    assert request.stdin.read(25_500) == data[:25_500]
    assert conn.pulls == 26
    assert request.stdin.read(10) == data[25_500:25_510]
    assert request.stdin.read() == data[25_510:]


def test_many_small_reads_give_back_the_body_exactly():
    data = bytes(range(256)) * 300
    request, _ = make_request(stdin_chunks=[data[i : i + 7000] for i in range(0, len(data), 7000)])
    got = []
    while piece := request.stdin.read(333):
        got.append(piece)
    assert b"".join(got) == data


@pytest.mark.parametrize("limit", [None, 1, 5, 9, 10, 11, 100])
def test_readline_across_pieces_with_and_without_limit(limit):
    pieces = [b"abc", b"defg", b"hi\njk", b"l\n", b"", b"tail"]
    data = b"abcdefghi\njkl\ntail"
    request, _ = make_request(stdin_chunks=[p for p in pieces if p])
    lines = []
    while line := (request.stdin.readline(limit) if limit else request.stdin.readline()):
        lines.append(line)
        if limit:
            assert len(line) <= limit
        assert line.count(b"\n") <= 1 and (b"\n" not in line or line.endswith(b"\n"))
    assert b"".join(lines) == data


def test_read1_returns_at_most_one_piece():
    request, conn = make_request(stdin_chunks=[b"12345", b"678"])
    assert request.stdin.read1(100) == b"12345"
    assert request.stdin.read1(2) == b"67"
    assert request.stdin.read1() == b"8"
    assert request.stdin.read1() == b""


def test_stdin_reads_nothing_once_the_request_is_finished():
    request, conn = make_request(stdin_chunks=[b"unread", b"next request's bytes"])
    request.finish()
    pulls = conn.pulls
    assert request.stdin.read() == b"" and conn.pulls == pulls
