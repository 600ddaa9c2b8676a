"""The CGI response parser: bytes of program output in, FCGI_STDOUT bytes out."""

import pytest

from fcgikit.cgi.response import BadResponse, ResponseParser, error_response


def run(chunks, nph=False):
    parser = ResponseParser(nph=nph)
    out = b"".join(parser.feed(chunk) for chunk in chunks) + parser.close()
    return parser, out


def test_document_response_gets_crlf_line_ends():
    parser, out = run([b"Content-Type: text/plain\n\nhello\n"])
    assert out == b"Content-Type: text/plain\r\n\r\nhello\n"
    assert (parser.kind, parser.status) == ("document", 200)


def test_header_block_split_across_every_byte():
    raw = b"Content-Type: text/html\r\nX-A: 1\r\n\r\nbody"
    parser, out = run([raw[i:i + 1] for i in range(len(raw))])
    assert out == b"Content-Type: text/html\r\nX-A: 1\r\n\r\nbody"


def test_body_is_streamed_once_headers_are_done():
    parser = ResponseParser()
    assert parser.feed(b"Content-Type: text/plain\n") == b""
    assert parser.feed(b"\nfirst") == b"Content-Type: text/plain\r\n\r\nfirst"
    assert parser.feed(b"second") == b"second"


def test_status_header_is_kept():
    parser, out = run([b"Status: 404 Not Found\nContent-Type: text/plain\n\nno"])
    assert out.startswith(b"Status: 404 Not Found\r\n")
    assert parser.status == 404


def test_local_redirect_becomes_x_accel_redirect_and_body_is_dropped():
    parser, out = run([b"Location: /other/page?x=1\n\nignored body"])
    assert out == b"X-Accel-Redirect: /other/page?x=1\r\n\r\n"
    assert parser.kind == "local-redirect"


def test_client_redirect_gets_302():
    parser, out = run([b"Location: http://example.com/\n\n"])
    assert out == b"Status: 302 Found\r\nLocation: http://example.com/\r\n\r\n"
    assert (parser.kind, parser.status) == ("client-redirect", 302)


def test_path_location_with_explicit_status_is_a_client_redirect():
    parser, out = run([b"Status: 301 Moved\nLocation: /new\n\n"])
    assert b"X-Accel-Redirect" not in out and parser.status == 301


def test_nph_status_line_is_translated():
    raw = b"HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nmade"
    parser, out = run([raw], nph=True)
    assert out == b"Status: 201 Created\r\nContent-Type: text/plain\r\n\r\nmade"
    assert parser.status == 201


def test_status_line_from_a_non_nph_program_is_refused():
    with pytest.raises(BadResponse, match="not a header line"):
        run([b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"])


@pytest.mark.parametrize("raw, reason", [
    (b"", "printed nothing"),
    (b"Content-Type: text/plain\n", "inside the header block"),
    (b"\nhello", "empty line"),
    (b"<html>oops</html>\n\n", "not a header line"),
    (b"Status: abc\n\n", "bad Status"),
    (b"Status: 200 OK\nX-A: 1\rX-B: 2\n\n", "not a header line"),
])
def test_invalid_output_is_a_bad_response(raw, reason):
    with pytest.raises(BadResponse, match=reason):
        run([raw])


def test_endless_header_block_is_refused():
    parser = ResponseParser(max_header_bytes=100)
    with pytest.raises(BadResponse, match="longer than"):
        for _ in range(10):
            parser.feed(b"X-Pad: " + b"a" * 20 + b"\n")


def test_error_response_is_a_complete_cgi_response():
    raw = error_response(504, "the program took too long")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"Status: 504 Gateway Timeout\r\n")
    assert f"Content-Length: {len(body)}".encode() in head


def test_network_path_location_is_a_client_redirect():
    parser, out = run([b"Location: //other.example/x\n\n"])
    assert parser.kind == "client-redirect" and out.startswith(b"Status: 302 Found\r\n")
