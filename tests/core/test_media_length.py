"""What proves a media body whole: its framing or its WAV header; nothing else (pure, no I/O)."""

from __future__ import annotations

import gzip
import io
import struct
import wave

import pytest
from requests.structures import CaseInsensitiveDict

from telnyx_provider import media_length
from telnyx_provider.media_length import HEAD_BYTES, Framing, Unproven, framing, prove_complete, wav_size
from telnyx_provider.sandbox.media import mp3_bytes, wav_bytes

WAV = wav_bytes(2)


def prove(frame: Framing, body: bytes, wire: int | None = None) -> str:
    return prove_complete(frame, len(body) if wire is None else wire, len(body), body[:HEAD_BYTES])


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Content-Length": "10"}, Framing("content-length", 10)),
        ({"content-length": " 10 "}, Framing("content-length", 10)),
        ({"Transfer-Encoding": "chunked"}, Framing("chunked")),
        ({"Transfer-Encoding": "gzip, Chunked", "Content-Length": "10"}, Framing("chunked")),
        ({}, Framing("none")),
        ({"Content-Length": "-1"}, Framing("none")),
        ({"Content-Length": "1e3"}, Framing("none")),
        ({"Content-Length": "\u0661\u0662"}, Framing("none")),  # Arabic-Indic digits are not a length
    ],
)
def test_framing(headers, expected):
    assert framing(CaseInsensitiveDict(headers)) == expected


def test_content_length_proves_a_body_only_when_every_announced_byte_arrived():
    assert prove(Framing("content-length", len(WAV)), WAV) == f"Content-Length {len(WAV)}"
    with pytest.raises(Unproven, match="announced") as caught:
        prove(Framing("content-length", len(WAV)), WAV[:100])
    assert caught.value.retryable


def test_chunked_framing_is_proof_whatever_the_format():
    """A chunked body cut before its last chunk raises in urllib3 before this is asked (tested over HTTP)."""
    assert "chunked" in prove(Framing("chunked"), mp3_bytes(1))


def test_without_framing_a_whole_wav_is_proven_by_its_riff_size():
    assert prove(Framing("none"), WAV) == f"WAV header ({len(WAV)} bytes)"


@pytest.mark.parametrize("cut", [len(WAV) // 2, len(WAV) - 1, 44, 12])
def test_without_framing_a_cut_wav_is_incomplete_and_worth_another_attempt(cut):
    with pytest.raises(Unproven, match=f"declares {len(WAV)} bytes") as caught:
        prove(Framing("none"), WAV[:cut])
    assert caught.value.retryable


def test_without_framing_a_wav_with_extra_bytes_is_not_proven():
    with pytest.raises(Unproven):
        prove(Framing("none"), WAV + b"\0")


def test_without_framing_an_mp3_can_never_be_proven():
    with pytest.raises(Unproven, match="neither Content-Length nor chunked") as caught:
        prove(Framing("none"), mp3_bytes(2))
    assert not caught.value.retryable
    assert "MP3" in caught.value.missing


def riff(chunks: list[tuple[bytes, bytes]], riff_size: int | None = None) -> bytes:
    body = b"WAVE" + b"".join(
        cid + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1) for cid, data in chunks
    )
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


FMT = WAV[12:36]  # the fmt chunk of a real WAV (id, size, 16 bytes)


@pytest.mark.parametrize(
    ("data", "size", "why"),
    [
        (b"", None, "not a WAV"),
        (mp3_bytes(1), None, "not a WAV"),
        (b"RIFF\xff\xff\xff\xffWAVE" + FMT + b"data\xff\xff\xff\xff", None, "placeholder"),
        (b"RIFF\0\0\0\0WAVE" + FMT + b"data\0\0\0\0", None, "placeholder"),
        (riff([(b"LIST", b"x" * 5), (b"data", b"\1\2")]), 8 + 4 + 13 + 1 + 10, None),  # odd chunk padded
        (riff([(b"fmt ", FMT[8:])]), None, "no data chunk"),
        (b"RIFF" + struct.pack("<I", 40) + b"WAVE" + b"data" + struct.pack("<I", 1000), None, "does not fit"),
    ],
)
def test_wav_size(data, size, why):
    found, reason = wav_size(data)
    assert found == size
    if why:
        assert why in reason


def test_wav_size_of_a_real_file_and_one_with_a_list_chunk_before_its_data():
    assert wav_size(WAV) == (len(WAV), "")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 100)
    plain = buffer.getvalue()
    listed = plain[:36] + b"LIST" + struct.pack("<I", 4) + b"INFO" + plain[36:]
    listed = listed[:4] + struct.pack("<I", len(listed) - 8) + listed[8:]
    assert wav_size(listed) == (len(listed), "")


@pytest.mark.parametrize("frame", [Framing("content-length", 0), Framing("chunked"), Framing("none")])
def test_an_empty_body_is_never_a_whole_recording(frame):
    with pytest.raises(Unproven, match="no audio") as caught:
        prove(frame, b"")
    assert caught.value.retryable


@pytest.mark.parametrize("frame", [Framing("content-length", len(WAV) // 2), Framing("chunked")])
def test_a_framed_reply_carrying_a_wav_cut_before_it_was_served_is_not_whole(frame):
    with pytest.raises(Unproven, match=f"declares {len(WAV)} bytes") as caught:
        prove(frame, WAV[: len(WAV) // 2])
    assert caught.value.retryable


def test_a_framed_wav_with_trailing_bytes_is_accepted_as_sent():
    assert prove(Framing("content-length", len(WAV) + 1), WAV + b"\0") == f"Content-Length {len(WAV) + 1}"


def test_the_decoder_undoes_gzip_in_bounded_steps_across_members_and_knows_its_end():
    audio = bytes(range(256)) * 20_000  # 5 MB that compress well
    stream = gzip.compress(audio) + gzip.compress(b"second member")
    for piece_size in (1, 4096, len(stream)):
        decoder = media_length.Decoder({"Content-Encoding": "gzip"})
        pieces = [
            out
            for i in range(0, len(stream), piece_size)
            for out in decoder.decode(stream[i : i + piece_size])
        ]
        assert b"".join(pieces) == audio + b"second member"
        assert max(map(len, pieces)) <= media_length.Decoder.STEP
        assert decoder.ended
    decoder = media_length.Decoder(CaseInsensitiveDict({"content-encoding": "GZIP"}))
    list(decoder.decode(stream[: len(stream) // 3]))
    assert not decoder.ended


def test_without_a_coding_the_decoder_passes_bytes_through():
    decoder = media_length.Decoder({"Content-Encoding": "identity"})
    assert list(decoder.decode(b"RIFF")) == [b"RIFF"]
    assert decoder.ended


@pytest.mark.parametrize(
    "headers",
    [{"Content-Encoding": "br"}, {"Content-Encoding": "gzip, gzip"}, {"Transfer-Encoding": "gzip, chunked"}],
)
def test_codings_not_decoded_here_cannot_be_proven(headers):
    with pytest.raises(media_length.Unproven) as caught:
        media_length.Decoder(headers)
    assert not caught.value.retryable


def test_a_gzip_stream_that_stops_short_is_not_whole_whatever_the_framing():
    with pytest.raises(media_length.Unproven, match="gzip stream stops"):
        media_length.prove_complete(
            media_length.Framing("content-length", 10), 10, 100, b"", coding_ended=False
        )
