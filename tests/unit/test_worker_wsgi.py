"""WSGI on a fake request: environ, start_response/exc_info, headers, body, errors."""

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fcgikit.fastcgi.client import parse_cgi_response
from fcgikit.worker.wsgi import (
    FileWrapper,
    HeaderError,
    build_environ,
    render_headers,
    url_scheme,
    wsgi_handler,
)

from .worker_fakes import make_request

NGINX_PARAMS = {
    "QUERY_STRING": "a=1&b=%C3%A9",
    "REQUEST_METHOD": "GET",
    "CONTENT_TYPE": "",
    "CONTENT_LENGTH": "",
    "SCRIPT_NAME": "/shop/cart",
    "REQUEST_URI": "/shop/cart?a=1&b=%C3%A9",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REQUEST_SCHEME": "http",
    "SERVER_NAME": "localhost",
    "SERVER_PORT": "8080",
    "HTTP_HOST": "localhost",
    "HTTP_X_CAF\u00c9": "caf\u00c3\u00a9",  # latin-1 decoded UTF-8, as WSGI wants
}


def run(app, params=None, stdin_chunks=()):
    request, conn = make_request(dict(NGINX_PARAMS, **(params or {})), stdin_chunks)
    status = wsgi_handler(app)(request)
    request.finish(status)
    return status, conn


def test_environ_from_stock_nginx_params_routes_the_whole_path():
    environ = build_environ(dict(NGINX_PARAMS), None, None)
    assert environ["SCRIPT_NAME"] == "" and environ["PATH_INFO"] == "/shop/cart"
    assert environ["QUERY_STRING"] == "a=1&b=%C3%A9"
    assert "CONTENT_LENGTH" not in environ and "CONTENT_TYPE" not in environ
    assert environ["wsgi.version"] == (1, 0) and environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.multiprocess"] and not environ["wsgi.multithread"] and not environ["wsgi.run_once"]
    assert all(type(k) is str for k in environ)


def test_environ_keeps_script_name_and_path_info_when_nginx_sends_both():
    environ = build_environ(dict(NGINX_PARAMS, SCRIPT_NAME="/shop", PATH_INFO="/cart"), None, None)
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/shop", "/cart")


def test_environ_root_script_name_becomes_empty():
    environ = build_environ(dict(NGINX_PARAMS, SCRIPT_NAME="/", PATH_INFO="/x"), None, None)
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("", "/x")


def test_environ_fills_what_pep_3333_requires():
    environ = build_environ({}, None, None)
    for key in ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
                "SERVER_PROTOCOL"):
        assert key in environ


@pytest.mark.parametrize(
    "params, scheme",
    [
        ({}, "http"),
        ({"HTTPS": "on"}, "https"),
        ({"HTTPS": "1"}, "https"),
        ({"HTTPS": "off", "REQUEST_SCHEME": "http"}, "http"),
        ({"REQUEST_SCHEME": "https"}, "https"),
        ({"REQUEST_SCHEME": "gopher"}, "http"),
    ],
)
def test_url_scheme(params, scheme):
    assert url_scheme(params) == scheme


def test_render_headers_puts_the_status_line_in_a_cgi_status_header():
    head = render_headers("404 Not Found", [("Content-Type", "text/plain"), ("X-A", "b")])
    assert head == b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nX-A: b\r\n\r\n"


@pytest.mark.parametrize(
    "status, headers",
    [
        ("200", []),
        ("OK", []),
        (b"200 OK", []),
        ("200 OK", [("X-Evil", "a\r\nSet-Cookie: x=1")]),
        ("200 OK\r\nX: y", []),
        ("200 OK", [("X-Bad", "\u20ac")]),
    ],
)
def test_render_headers_refuses_what_cannot_be_sent(status, headers):
    with pytest.raises((HeaderError, TypeError)):
        render_headers(status, headers)


def test_render_headers_leaves_out_the_status_line_of_200_ok():
    """No Status is 200 OK (RFC 3875 6.3.3); Caddy would pass the line on as a header."""
    assert render_headers("200 OK", [("Content-Type", "text/plain")]) == b"Content-Type: text/plain\r\n\r\n"
    # Kept: another reason phrase, no header at all, a Location (without Status a 302).
    assert render_headers("200 Fine", [("X", "1")]) == b"Status: 200 Fine\r\nX: 1\r\n\r\n"
    assert render_headers("200 OK", []) == b"Status: 200 OK\r\n\r\n"
    assert render_headers("200 OK", [("LOCATION", "/x")]).startswith(b"Status: 200 OK\r\n")


def test_render_headers_refuses_non_str_values():
    with pytest.raises(TypeError):
        render_headers("200 OK", [("X", b"bytes")])


def test_list_response_is_sent_once_with_end_request():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello ", b"world"]

    status, conn = run(app)
    assert status == 0
    assert conn.stdout_sends == []  # nothing before END_REQUEST
    assert parse_cgi_response(conn.stdout) == (200, [("Content-Type", "text/plain")], b"hello world")


def test_generator_blocks_are_sent_as_they_come_and_close_is_called():
    events = []

    class Body:
        def __iter__(self):
            yield b""
            events.append("first")
            yield b"one"
            yield b"two"

        def close(self):
            events.append("closed")

    def app(environ, start_response):
        start_response("201 Created", [])
        return Body()

    _, conn = run(app)
    assert conn.stdout_sends[0] == b"Status: 201 Created\r\n\r\none"
    assert conn.stdout_sends[1] == b"two"
    assert events == ["first", "closed"]


def test_empty_generator_still_sends_headers():
    def app(environ, start_response):
        start_response("204 No Content", [])
        return iter(())

    _, conn = run(app)
    assert conn.stdout == b"Status: 204 No Content\r\n\r\n"


def test_write_callable_sends_immediately():
    def app(environ, start_response):
        write = start_response("200 OK", [("X", "1")])
        write(b"early ")
        return [b"late"]

    _, conn = run(app)
    assert conn.stdout_sends == [b"X: 1\r\n\r\nearly "]
    assert conn.stdout.endswith(b"early late")


def test_start_response_twice_without_exc_info_is_an_error_500():
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b""]

    status, conn = run(app)
    assert status == 1 and parse_cgi_response(conn.stdout)[0] == 500


def test_exc_info_before_headers_sent_replaces_the_response():
    def app(environ, start_response):
        start_response("200 OK", [("X-First", "1")])
        try:
            raise ValueError("oops")
        except ValueError:
            start_response("503 Service Unavailable", [("X-Second", "1")], sys.exc_info())
        return [b"sorry"]

    _, conn = run(app)
    assert parse_cgi_response(conn.stdout) == (503, [("X-Second", "1")], b"sorry")


def test_exc_info_after_headers_sent_reraises_and_cuts_the_response():
    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"partial")
        try:
            raise KeyError("late")
        except KeyError:
            start_response("500 Oops", [], sys.exc_info())
        return [b"never"]

    status, conn = run(app)
    assert status == 1
    assert conn.ended == []  # no END_REQUEST: the web server sees the response fail
    assert conn.gone


def test_app_exception_gives_500_and_logs_the_traceback(capfd):
    def app(environ, start_response):
        raise RuntimeError("kaboom")

    status, conn = run(app)
    assert status == 1
    code, _, body = parse_cgi_response(conn.stdout)
    assert code == 500 and body == b"Internal Server Error\n"
    assert b"RuntimeError: kaboom" in conn.stderr
    err = capfd.readouterr().err
    assert "Traceback" in err and "kaboom" in err and "GET /shop/cart" in err


def test_exception_after_start_response_but_before_body_still_gives_500():
    def app(environ, start_response):
        start_response("200 OK", [("X", "1")])

        def body():
            raise RuntimeError("in the iterable")
            yield b""

        return body()

    _, conn = run(app)
    assert parse_cgi_response(conn.stdout)[0] == 500


def test_str_body_is_an_app_error():
    def app(environ, start_response):
        start_response("200 OK", [])
        return ["text, not bytes"]

    _, conn = run(app)
    assert parse_cgi_response(conn.stdout)[0] == 500


def test_wsgi_input_streams_the_body_and_errors_go_to_fcgi_stderr(capfd):
    seen = {}

    def app(environ, start_response):
        seen["first"] = environ["wsgi.input"].read(3)
        seen["rest"] = environ["wsgi.input"].read()
        environ["wsgi.errors"].write("note to the log\n")
        start_response("200 OK", [])
        return [b"ok"]

    _, conn = run(app, {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "6"}, [b"abc", b"def"])
    assert seen == {"first": b"abc", "rest": b"def"}
    assert conn.stderr == b"note to the log\n"
    assert "note to the log" in capfd.readouterr().err


def test_a_client_that_went_away_stops_the_iterable():
    produced = []

    def app(environ, start_response):
        start_response("200 OK", [])
        for i in range(100):
            produced.append(i)
            yield b"block"

    request, conn = make_request(dict(NGINX_PARAMS))
    original = conn.send_stream

    def send_then_fail(*args):
        original(*args)
        conn.went_away("sending failed: Broken pipe")

    conn.send_stream = send_then_fail
    wsgi_handler(app)(request)
    assert produced == [0]
    assert conn.reasons == ["sending failed: Broken pipe"]


def test_file_wrapper_reads_blocks_and_closes(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    with open(path, "rb") as handle:
        wrapper = FileWrapper(handle, 4)
        assert list(wrapper) == [b"xxxx", b"xxxx", b"xx"]
        wrapper.close()
        assert handle.closed


def test_file_wrapper_through_the_app():
    import io

    def app(environ, start_response):
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"file body"))

    _, conn = run(app)
    assert parse_cgi_response(conn.stdout)[2] == b"file body"


def test_pep_3333_validator_finds_nothing_wrong(recwarn):
    """wsgiref.validate checks the environ, the streams and start_response; any
    complaint is an AssertionError in the app, which would turn into a 500."""
    from wsgiref.validate import validator

    def app(environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        line = environ["wsgi.input"].readline(10)
        environ["wsgi.errors"].write("checked\n")
        environ["wsgi.errors"].flush()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body + line)))])
        return [body, line]

    for method, params, stdin, expected in [
        ("GET", {}, [], b""),
        ("POST", {"CONTENT_LENGTH": "5", "CONTENT_TYPE": "text/plain"}, [b"hel", b"lo", b"\nrest"], b"hello\n"),
        ("GET", {"SCRIPT_NAME": "/app", "PATH_INFO": "/x", "HTTPS": "on"}, [], b""),
    ]:
        status, conn = run(validator(app), dict(params, REQUEST_METHOD=method), stdin)
        code, _, body = parse_cgi_response(conn.stdout)
        assert (status, code, body) == (0, 200, expected), conn.stderr
    assert not [w for w in recwarn if "wsgiref" in str(w.filename)], [str(w.message) for w in recwarn]


def test_close_failing_after_a_buffered_body_still_gives_500():
    class Body(list):
        def close(self):
            raise OSError("cleanup failed")

    def app(environ, start_response):
        start_response("200 OK", [])
        return Body([b"complete"])

    status, conn = run(app)
    assert status == 1 and parse_cgi_response(conn.stdout)[0] == 500 and not conn.gone


def test_a_status_line_once_accepted_is_still_checked_with_its_headers():
    assert render_headers("299 Fine", []).startswith(b"Status: 299 Fine\r\n")
    assert render_headers("299 Fine", []) == render_headers("299 Fine", [])  # the second time from the known ones
    with pytest.raises(HeaderError):
        render_headers("299 Fine", [("X-Evil", "a\nb")])
    for _ in range(2):  # refused every time, never remembered as good
        with pytest.raises(HeaderError):
            render_headers("29 Short", [])
        with pytest.raises(HeaderError):
            render_headers("200 OK\nX: y", [])


# What lighttpd and Caddy send for a POST besides nginx's params: the Content-Length
# and Content-Type headers once more as HTTP_ variables, which PEP 3333 forbids.
LIGHTTPD_POST = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "5", "HTTP_CONTENT_LENGTH": "5"}
CADDY_POST = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "5", "CONTENT_TYPE": "text/plain",
              "HTTP_CONTENT_LENGTH": "5", "HTTP_CONTENT_TYPE": "text/plain"}


@pytest.mark.parametrize("params", [LIGHTTPD_POST, CADDY_POST], ids=["lighttpd", "caddy"])
def test_the_validator_accepts_what_lighttpd_and_caddy_send(params, recwarn):
    from wsgiref.validate import validator

    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    status, conn = run(validator(app), params, [b"hello"])
    assert (status, parse_cgi_response(conn.stdout)[::2]) == (0, (200, b"hello")), conn.stderr
    assert "HTTP_CONTENT_LENGTH" not in seen and "HTTP_CONTENT_TYPE" not in seen
    assert seen["CONTENT_LENGTH"] == "5"
    assert seen.get("CONTENT_TYPE") == params.get("CONTENT_TYPE")


@pytest.mark.parametrize("length", ["-1", "", "abc", "5 ", "\u00b2", None])
def test_a_length_that_is_not_one_is_left_out_and_the_body_read_to_its_end(length, recwarn):
    """Caddy sends CONTENT_LENGTH=-1 for a chunked upload: no length, and
    wsgi.input_terminated says reading to the end is how to get the body."""
    from wsgiref.validate import validator

    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        chunks = []
        while chunk := environ["wsgi.input"].read(4):  # the validator allows read(size) only
            chunks.append(chunk)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"".join(chunks)]

    params = dict(NGINX_PARAMS, REQUEST_METHOD="POST", HTTP_TRANSFER_ENCODING="chunked", CONTENT_LENGTH=length)
    if length is None:  # no length sent at all, with a body
        del params["CONTENT_LENGTH"]
    request, conn = make_request(params, [b"chunked", b" body"])
    status = wsgi_handler(validator(app))(request)
    request.finish(status)
    assert (status, parse_cgi_response(conn.stdout)[::2]) == (0, (200, b"chunked body")), conn.stderr
    assert "CONTENT_LENGTH" not in seen and seen["wsgi.input_terminated"] is True


def test_a_real_length_is_kept():
    assert build_environ({"CONTENT_LENGTH": "1048576"}, None, None)["CONTENT_LENGTH"] == "1048576"
    assert build_environ({"CONTENT_LENGTH": "0"}, None, None)["CONTENT_LENGTH"] == "0"


def test_a_proxy_header_never_reaches_the_app_as_http_proxy():
    """httpoxy: many HTTP clients take HTTP_PROXY for their outbound proxy."""
    environ = build_environ({"HTTP_PROXY": "http://evil:1/", "HTTP_HOST": "h"}, None, None)
    assert "HTTP_PROXY" not in environ and environ["HTTP_HOST"] == "h"


# --- build_environ against a plain reference ------------------------------------

_ENVIRON_NAMES = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
                  "SERVER_PROTOCOL", "CONTENT_LENGTH", "CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE",
                  "HTTP_PROXY", "REQUEST_SCHEME", "HTTPS", "HTTP_HOST", "wsgi.version", "wsgi.url_scheme"]
_ENVIRON_VALUES = ["", "/", "0", "12", "-1", "1.5", "GET", "http", "https", "HTTP", "on", "off", "/x", "\u00b2"]


def reference_environ(params: dict, wsgi_input, wsgi_errors) -> dict:
    """What build_environ does, written plainly: every step for every request."""
    from fcgikit.worker.wsgi import _REQUIRED_DEFAULTS, _WSGI_CONSTANTS, split_script_name

    environ = params
    for name, default in _REQUIRED_DEFAULTS:
        if not environ.get(name):
            environ[name] = default
    split_script_name(environ)
    length = environ.get("CONTENT_LENGTH")
    if length is not None and not length.isdecimal():
        del environ["CONTENT_LENGTH"]
    if environ.get("CONTENT_TYPE") == "":
        del environ["CONTENT_TYPE"]
    for name in ("HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_PROXY"):
        environ.pop(name, None)
    environ.update(_WSGI_CONSTANTS)
    environ["wsgi.url_scheme"] = url_scheme(environ)
    environ["wsgi.input"] = wsgi_input
    environ["wsgi.errors"] = wsgi_errors
    return environ


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_ENVIRON_NAMES), st.sampled_from(_ENVIRON_VALUES) | st.text(max_size=4)),
                max_size=20))
def test_build_environ_agrees_with_the_plain_reference_order_included(pairs):
    params = dict(pairs)
    expected = list(reference_environ(dict(params), "in", "err").items())
    assert list(build_environ(dict(params), "in", "err").items()) == expected
    nginx = dict(NGINX_PARAMS, **params)
    assert list(build_environ(dict(nginx), "in", "err").items()) == list(reference_environ(dict(nginx), "in",
                                                                                           "err").items())
