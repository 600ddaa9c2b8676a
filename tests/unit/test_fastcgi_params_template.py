"""decode_params_text takes most of a body from a template learned from the bodies
before it (fastcgi/protocol.py, `_template`). The template may change how fast a
body is decoded, never what it decodes to: over any sequence of bodies, alike or
not, every answer (the dict and its order) and every error must be the reference
decoder's (`decode_params`, pair by pair)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fcgikit.fastcgi import ProtocolError, decode_params, encode_params, protocol
from fcgikit.fastcgi.protocol import decode_params_text

NGINX = [
    (b"QUERY_STRING", b""), (b"REQUEST_METHOD", b"GET"), (b"CONTENT_TYPE", b""), (b"CONTENT_LENGTH", b""),
    (b"REQUEST_URI", b"/"), (b"DOCUMENT_URI", b"/"), (b"SERVER_PROTOCOL", b"HTTP/1.1"),
    (b"REQUEST_SCHEME", b"http"), (b"GATEWAY_INTERFACE", b"CGI/1.1"), (b"SERVER_SOFTWARE", b"nginx"),
    (b"REMOTE_ADDR", b"127.0.0.1"), (b"REMOTE_PORT", b"40000"), (b"SERVER_ADDR", b"127.0.0.1"),
    (b"SERVER_PORT", b"8080"), (b"SERVER_NAME", b"localhost"), (b"HTTP_PROXY", b""), (b"HTTP_HOST", b"127.0.0.1"),
    (b"SCRIPT_NAME", b""), (b"PATH_INFO", b"/"), (b"HTTP_USER_AGENT", b"wrk"),
]


@pytest.fixture(autouse=True)
def fresh_template(monkeypatch):
    """Each test starts with nothing learned, and learns from every body it does not fit
    (the production policy learns less often: more templates here, more to check)."""
    monkeypatch.setattr(protocol, "_template", None)
    monkeypatch.setattr(protocol, "_learned_pairs", {})
    monkeypatch.setattr(protocol, "_changing", frozenset())
    monkeypatch.setattr(protocol, "_misses", 0)


def reference(body: bytes):
    """The dict, in order, or the error the pair-by-pair decoder gives."""
    try:
        pairs = decode_params(body)
    except ProtocolError:
        return ProtocolError
    result: dict[str, str] = {}
    for name, value in pairs:
        result[name.decode("latin-1")] = value.decode("latin-1")
    return list(result.items())


def decoded(body: bytes):
    try:
        return list(decode_params_text(body).items())
    except ProtocolError:
        return ProtocolError


def reset_template() -> None:
    protocol._template, protocol._learned_pairs, protocol._changing, protocol._misses = None, {}, frozenset(), 0


names = st.binary(min_size=1, max_size=20) | st.sampled_from([n for n, _ in NGINX]) | st.binary(min_size=128,
                                                                                                  max_size=140)
values = (st.binary(max_size=12) | st.sampled_from([v for _, v in NGINX])
          | st.integers(120, 300).map(lambda n: b"v" * n))  # across the 1-byte/4-byte length boundary


@st.composite
def mutated(draw, base, hot):
    """A body like `base` (a list of pairs): values changed (mostly those at the
    `hot` indices, as a web server's changing params), pairs added, dropped,
    swapped or doubled, or the encoded bytes cut short or extended."""
    pairs = list(base)
    for i in hot:
        if i < len(pairs) and draw(st.booleans()):
            pairs[i] = (pairs[i][0], draw(values))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        if not pairs:
            pairs.append((draw(names), draw(values)))
            continue
        i = draw(st.integers(0, len(pairs) - 1))
        kind = draw(st.sampled_from(["value", "same_length", "insert", "drop", "swap", "twice"]))
        name, value = pairs[i]
        if kind == "value":
            pairs[i] = (name, draw(values))
        elif kind == "same_length":
            pairs[i] = (name, draw(st.binary(min_size=len(value), max_size=len(value))))
        elif kind == "insert":
            pairs.insert(i, (draw(names), draw(values)))
        elif kind == "drop":
            del pairs[i]
        elif kind == "swap":
            j = draw(st.integers(0, len(pairs) - 1))
            pairs[i], pairs[j] = pairs[j], pairs[i]
        else:
            pairs.insert(draw(st.integers(0, len(pairs))), (name, draw(values)))
    body = encode_params(pairs)
    cut = draw(st.sampled_from(["none"] * 6 + ["cut", "extend"]))
    if cut == "cut" and body:
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif cut == "extend":
        body += draw(st.binary(min_size=1, max_size=6))
    return body


@st.composite
def body_sequences(draw):
    base = draw(st.just(NGINX) | st.lists(st.tuples(names, values), max_size=8))
    hot = draw(st.lists(st.integers(0, max(len(base) - 1, 0)), max_size=3))
    return draw(st.lists(mutated(base, hot), min_size=1, max_size=12))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body_sequences(), st.booleans())
def test_any_sequence_of_bodies_decodes_as_the_reference_does(bodies, learn_always):
    reset_template()
    if learn_always:
        protocol._LEARN_AT_ONCE, saved = 10**9, protocol._LEARN_AT_ONCE
    try:
        for body in bodies:
            assert decoded(body) == reference(body)
    finally:
        if learn_always:
            protocol._LEARN_AT_ONCE = saved


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=8))
def test_random_bytes_after_a_learned_template_decode_as_the_reference_does(garbage):
    reset_template()
    decode_params_text(encode_params(NGINX))
    for body in garbage:
        assert decoded(body) == reference(body)
        # The template's own bytes with random bytes around or inside them.
        for spliced in (encode_params(NGINX)[: len(body)] + body, body + encode_params(NGINX)[len(body) :]):
            assert decoded(spliced) == reference(spliced)


def nginx_with(**changes) -> bytes:
    return encode_params([(n, changes.get(n.decode(), v)) for n, v in NGINX])


def test_a_body_that_fits_the_template_is_not_decoded_pair_by_pair(monkeypatch):
    decode_params_text(nginx_with(REMOTE_PORT=b"40001"))  # learned: all of it as it is
    decode_params_text(nginx_with(REMOTE_PORT=b"40002"))  # learned: REMOTE_PORT changes
    assert [step[2] for step in protocol._template[0]] == ["REMOTE_PORT"]

    def pair_by_pair(*args):
        raise AssertionError("decoded pair by pair")

    monkeypatch.setattr(protocol, "_decode_pairs", pair_by_pair)
    for port in (b"1", b"65535", b"x" * 200, b""):  # a 4-byte length too
        body = nginx_with(REMOTE_PORT=port)
        assert decoded(body) == reference(body)
    with pytest.raises(AssertionError):  # a value that did not change before: not in the template
        decode_params_text(nginx_with(REQUEST_URI=b"/other"))


def test_a_body_that_fits_part_of_the_template_is_decoded_pair_by_pair_from_there_only(monkeypatch):
    decode_params_text(nginx_with(REMOTE_PORT=b"40001"))
    decode_params_text(nginx_with(REMOTE_PORT=b"40002"))
    decoded_from = []
    real = protocol._decode_pairs
    monkeypatch.setattr(protocol, "_decode_pairs", lambda body, text, pos, result: (decoded_from.append(pos),
                                                                                    real(body, text, pos, result)))
    other_headers = encode_params([(n, b"1" if n == b"REMOTE_PORT" else v) for n, v in NGINX[:-1]]
                                  + [(b"HTTP_ACCEPT", b"*/*"), (b"HTTP_USER_AGENT", b"curl")])
    assert decoded(other_headers) == reference(other_headers)
    fitted = encode_params([(n, b"1" if n == b"REMOTE_PORT" else v) for n, v in NGINX[:-1]])
    assert decoded_from == [len(fitted)]  # only the headers after the last pair that fitted
    other_method = nginx_with(REQUEST_METHOD=b"POST", REMOTE_PORT=b"2")
    assert decoded(other_method) == reference(other_method)
    assert decoded_from[-1] == len(encode_params(NGINX[:1]))  # from REQUEST_METHOD on
    other_host = nginx_with(HTTP_HOST=b"example.org", REMOTE_PORT=b"3")
    assert decoded(other_host) == reference(other_host)
    assert decoded_from[-1] == other_host.index(b"HTTP_HOST") - 2  # from HTTP_HOST on


def test_a_changing_value_stays_changing_and_new_ones_join_it():
    decode_params_text(nginx_with())
    decode_params_text(nginx_with(REMOTE_PORT=b"1"))
    decode_params_text(nginx_with(REMOTE_PORT=b"2", REQUEST_URI=b"/a", PATH_INFO=b"/a"))
    assert [step[2] for step in protocol._template[0]] == ["REQUEST_URI", "REMOTE_PORT", "PATH_INFO"]
    decode_params_text(nginx_with(REMOTE_PORT=b"2", REQUEST_URI=b"/a", PATH_INFO=b"/a", QUERY_STRING=b"q"))
    assert [step[2] for step in protocol._template[0]] == ["QUERY_STRING", "REQUEST_URI", "REMOTE_PORT",
                                                            "PATH_INFO"]


def test_learning_backs_off_when_bodies_keep_changing_shape(monkeypatch):
    learned = []
    real = protocol._learn
    monkeypatch.setattr(protocol, "_learn", lambda body: (learned.append(body), real(body)))
    for i in range(200):  # a new first pair each time: the template never fits
        decode_params_text(encode_params([(b"HTTP_X_%d" % i, b"")] + NGINX))
    assert len(learned) == protocol._LEARN_AT_ONCE + (200 - protocol._LEARN_AT_ONCE) // protocol._LEARN_EVERY


def test_a_large_body_or_one_with_a_name_twice_is_not_learned():
    big = encode_params([(b"HTTP_COOKIE", b"c" * (protocol._LEARN_MAX + 1))])
    assert decoded(big) == reference(big)
    assert protocol._template is None
    twice = encode_params(NGINX + [(b"REQUEST_URI", b"/again")])
    assert decoded(twice) == reference(twice)
    assert protocol._template is None
