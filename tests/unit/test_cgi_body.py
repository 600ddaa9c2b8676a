"""RequestBody: exactly CONTENT_LENGTH bytes of FCGI_STDIN, discard, spool."""

from fcgikit.cgi.body import RequestBody


class FakeStdin:
    """FCGI_STDIN arriving in records of `piece` bytes."""

    def __init__(self, data: bytes, piece: int = 7) -> None:
        self.data, self.piece, self.pulled = data, piece, 0

    def read1(self, size: int) -> bytes:
        size = min(size, self.piece)
        chunk, self.data = self.data[:size], self.data[size:]
        self.pulled += len(chunk)
        return chunk

    def discard_rest(self) -> None:
        self.pulled += len(self.data)
        self.data = b""


def read_all(body: RequestBody) -> bytes:
    chunks = []
    while chunk := body.read(5):
        chunks.append(chunk)
    return b"".join(chunks)


def test_exactly_content_length_bytes_and_the_rest_is_drained():
    stdin = FakeStdin(b"0123456789extra")
    body = RequestBody(stdin, 10)
    assert read_all(body) == b"0123456789"
    assert body.received and stdin.data == b""


def test_without_content_length_reads_to_the_end():
    body = RequestBody(FakeStdin(b"abcdefghijklmnop"), None)
    assert read_all(body) == b"abcdefghijklmnop" and body.received


def test_short_body_ends_early():
    body = RequestBody(FakeStdin(b"abc"), 10)
    assert read_all(body) == b"abc" and body.received


def test_discard_receives_the_rest_without_keeping_it():
    stdin = FakeStdin(b"x" * 100)
    body = RequestBody(stdin, 100)
    assert body.read(5) == b"xxxxx"
    body.discard()
    assert body.received and stdin.pulled == 100 and body.read(5) == b""


def test_spool_receives_the_rest_and_still_serves_it_in_order():
    data = bytes(range(256)) * 50
    stdin = FakeStdin(data, piece=1000)
    body = RequestBody(stdin, len(data))
    first = body.read(100)
    body.spool_rest()
    assert body.received and stdin.data == b""
    assert first + read_all(body) == data
