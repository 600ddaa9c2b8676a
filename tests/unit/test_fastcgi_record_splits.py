"""RecordReader against a plain reference parser, with the stream cut at random
points: records sliced in place and records completed across reads must agree."""

import os
import random

import pytest

from fcgikit.fastcgi.protocol import HEADER, ProtocolError, RecordReader, encode_record


def reference(stream: bytes):
    records, pos = [], 0
    while len(stream) - pos >= 8:
        version, rtype, request_id, length, padding = HEADER.unpack_from(stream, pos)
        if version != 1:
            return records, None  # the reader must fail here
        if len(stream) - pos < 8 + length + padding:
            break
        records.append((rtype, request_id, stream[pos + 8 : pos + 8 + length]))
        pos += 8 + length + padding
    return records, len(stream) - pos


def random_stream(rng: random.Random) -> bytes:
    sizes = [0, 1, 7, 8, 9, 100, 4096, 65528]
    stream = b"".join(encode_record(rng.randint(1, 11), rng.randint(0, 3), os.urandom(rng.choice(sizes)))
                      for _ in range(rng.randint(0, 6)))
    if rng.random() < 0.2:
        stream += os.urandom(rng.randint(1, 20))  # garbage, or a record cut short
    return stream


@pytest.mark.parametrize("seed", range(8))
def test_any_cut_gives_the_records_of_the_whole_stream(seed):
    rng = random.Random(seed)
    for _ in range(300):
        stream = random_stream(rng)
        cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(0, 8)))) if len(stream) > 1 else []
        parts = [stream[i:j] for i, j in zip([0] + cuts, cuts + [len(stream)], strict=True)]
        reader, got, failed = RecordReader(), [], False
        try:
            for part in parts:
                got += reader.feed(part)
        except ProtocolError:
            failed = True
        want, left = reference(stream)
        if left is None:
            assert failed and got == want[: len(got)]
        else:
            assert not failed and got == want and reader.buffered == left
            assert all(type(content) is bytes for _, _, content in got)


def test_non_bytes_input_still_gives_bytes_contents():
    record = encode_record(5, 1, b"body")
    assert RecordReader().feed(bytearray(record)) == [(5, 1, b"body")]
    assert type(RecordReader().feed(memoryview(record))[0][2]) is bytes
