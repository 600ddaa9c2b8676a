"""The accept loop's plain-CGI round: one request from the environment and stdio."""

import io

from fcgikit.worker.cgi_request import CGIRequest, started_as_cgi


def test_started_as_cgi_looks_at_gateway_interface():
    assert started_as_cgi({"GATEWAY_INTERFACE": "CGI/1.1"})
    assert not started_as_cgi({})


def test_stdin_stops_at_content_length_and_output_reaches_stdout():
    out, err = io.BytesIO(), io.BytesIO()
    request = CGIRequest({"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "5", "REQUEST_URI": "/x?y"},
                         io.BytesIO(b"hello and more"), out, err)
    assert (request.method, request.uri) == ("POST", "/x?y")
    assert request.stdin.read() == b"hello"
    request.stdout.write(b"Content-Type: text/plain\r\n\r\nhi")
    request.stderr.write(b"note")
    assert out.getvalue() == b""  # batched until the request ends
    request.finish()
    assert out.getvalue() == b"Content-Type: text/plain\r\n\r\nhi" and err.getvalue() == b"note"
    assert not request.client_gone()


def test_no_content_length_means_no_body():
    request = CGIRequest({"REQUEST_METHOD": "GET"}, io.BytesIO(b"not for us"), io.BytesIO(), io.BytesIO())
    assert request.stdin.read() == b""
