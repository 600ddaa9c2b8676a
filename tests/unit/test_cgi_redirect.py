"""Local redirects, the pure parts: which mode applies, what the target request
looks like, and the parser's deferred local redirect."""

import pytest

from fcgikit.cgi.redirect import mode_for, redirected_params, target_key
from fcgikit.cgi.response import ResponseParser, client_redirect

ORIGINAL = {
    "REQUEST_METHOD": "POST", "CONTENT_LENGTH": "3", "CONTENT_TYPE": "application/x-www-form-urlencoded",
    "QUERY_STRING": "a=1", "SCRIPT_NAME": "/cgi-bin/form.sh", "PATH_INFO": "",
    "SCRIPT_FILENAME": "/srv/www/cgi-bin/form.sh", "DOCUMENT_ROOT": "/srv/www",
    "REQUEST_URI": "/cgi-bin/form.sh?a=1", "HTTP_COOKIE": "s=1", "HTTP_CONTENT_LENGTH": "3",
    "SERVER_SOFTWARE": "lighttpd/1.4.69",
}


@pytest.mark.parametrize("configured, software, mode", [
    ("auto", "nginx/1.22.1", "x-accel"),
    ("auto", "nginx", "x-accel"),              # fcgikit's own nginx.conf
    ("auto", "lighttpd/1.4.69", "follow"),
    ("auto", "Apache/2.4.62", "follow"),
    ("auto", "", "follow"),
    ("follow", "nginx/1.22.1", "follow"),
    ("client", "nginx/1.22.1", "client"),
    ("x-accel", "Caddy", "x-accel"),
])
def test_mode(configured, software, mode):
    assert mode_for(configured, {"SERVER_SOFTWARE": software}) == mode


def test_the_target_is_a_get_without_body_mapped_like_the_original():
    target = redirected_params(ORIGINAL, b"/cgi-bin/show%20it.sh?b=2#frag")
    assert target["REQUEST_METHOD"] == "GET"
    assert (target["SCRIPT_NAME"], target["QUERY_STRING"]) == ("/cgi-bin/show it.sh", "b=2")
    assert target["SCRIPT_FILENAME"] == "/srv/www/cgi-bin/show it.sh"
    assert target["REQUEST_URI"] == "/cgi-bin/show%20it.sh?b=2"
    for gone in ("CONTENT_LENGTH", "CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "PATH_INFO"):
        assert gone not in target
    assert (target["REDIRECT_URL"], target["REDIRECT_STATUS"]) == ("/cgi-bin/form.sh", "200")
    assert target["HTTP_COOKIE"] == "s=1" and target["DOCUMENT_ROOT"] == "/srv/www"
    assert ORIGINAL["REQUEST_METHOD"] == "POST"   # the original is left as it was


def test_without_a_matching_script_filename_the_document_root_maps_it():
    params = dict(ORIGINAL, SCRIPT_FILENAME="/elsewhere/form.sh")
    assert "SCRIPT_FILENAME" not in redirected_params(params, b"/cgi-bin/x.sh")
    params.pop("SCRIPT_FILENAME")
    assert "SCRIPT_FILENAME" not in redirected_params(params, b"/cgi-bin/x.sh")


def test_loop_key_is_path_and_query():
    target = redirected_params(ORIGINAL, b"/cgi-bin/form.sh?a=1")
    assert target_key(target) == target_key(ORIGINAL)
    assert target_key(redirected_params(ORIGINAL, b"/cgi-bin/form.sh?a=2")) != target_key(ORIGINAL)


def test_deferred_local_redirect_outputs_nothing_and_keeps_the_location():
    parser = ResponseParser(defer_local_redirect=True)
    assert parser.feed(b"Location: /next?x=1\n\nbody to drop") == b""
    assert parser.feed(b"more") == b"" and parser.close() == b""
    assert (parser.kind, parser.location, parser.head_sent) == ("local-redirect", b"/next?x=1", False)


def test_deferred_parser_passes_other_responses_unchanged():
    parser = ResponseParser(defer_local_redirect=True)
    assert parser.feed(b"Location: http://example.com/\n\n") == b"Status: 302 Found\r\nLocation: http://example.com/\r\n\r\n"
    assert parser.location is None and parser.head_sent


def test_extra_headers_are_added():
    parser = ResponseParser(extra_headers=((b"X-Fcgikit-Fallback", b"cgi"),))
    assert parser.feed(b"Status: 200 OK\nContent-Type: text/plain\n\nhi") == \
        b"Status: 200 OK\r\nContent-Type: text/plain\r\nX-Fcgikit-Fallback: cgi\r\n\r\nhi"


def test_client_redirect_is_302_after_get_and_303_after_post():
    assert client_redirect(b"/t.txt", "GET") == b"Status: 302 Found\r\nLocation: /t.txt\r\nContent-Length: 0\r\n\r\n"
    assert client_redirect(b"/t.txt", "HEAD").startswith(b"Status: 302 Found\r\n")
    assert client_redirect(b"/t.txt", "POST").startswith(b"Status: 303 See Other\r\n")
