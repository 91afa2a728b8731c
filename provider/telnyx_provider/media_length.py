"""Proof that a media body arrived whole: from the reply's framing, its gzip stream or the audio's own header.

Pure: no I/O. A reply's end is proven by ``Content-Length`` (every byte it announced arrived), by the chunked
framing (the terminating zero-size chunk arrived: urllib3 raises on a body cut before it), or, for a reply
with neither (HTTP/1.0 style: the body ends when the connection closes, so a cut looks like an end), by the
audio's own header: a WAV's RIFF size must account for exactly the bytes received and hold its ``data``
chunk. MP3 and the other compressed formats carry no reliable total length, so without framing they are
refused. Whatever the framing, an empty body, or a WAV whose header declares more than arrived (a file cut
before it was served), is not a whole recording.

A content-encoded body (media requests ask for ``identity``; a server may send gzip anyway) is decoded here,
by :class:`Decoder`, and must reach the end of its gzip stream: ``Content-Length`` counts the encoded
bytes, so a stream that stops short inside a whole reply is a cut recording. Codings that cannot be
decoded here (``br``, ``zstd``, a transfer coding other than chunked) are refused.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

#: Bytes of the body's start kept to read an audio header (a WAV's ``data`` chunk starts within them).
HEAD_BYTES = 64 * 1024
_DIGITS = re.compile(r"[0-9]{1,18}")
#: RIFF sizes that writers put in a header they never finish (a WAV streamed as it is recorded).
_PLACEHOLDER_SIZES = frozenset({0, 0xFFFFFFFF})


@dataclass(frozen=True)
class Framing:
    """How a reply delimits its body.

    :param kind: ``"content-length"``, ``"chunked"`` or ``"none"`` (the body ends when the connection closes).
    :param length: the announced length, for ``content-length``.
    """

    kind: str
    length: int | None = None


class Unproven(Exception):
    """The body's end is not proven.

    :param missing: what proof was missing or failed, in words.
    :param retryable: whether another attempt may prove it (a cut body) or never can (no proof at all).
    """

    def __init__(self, missing: str, *, retryable: bool) -> None:
        super().__init__(missing)
        self.missing = missing
        self.retryable = retryable


def framing(headers: Mapping[str, str]) -> Framing:
    """How the reply with these headers frames its body (``Transfer-Encoding: chunked`` wins, as in HTTP/1.1).

    :param headers: the reply's headers (case-insensitive mapping).
    """
    codings = [coding.strip().lower() for coding in (headers.get("Transfer-Encoding") or "").split(",")]
    if "chunked" in codings:
        return Framing("chunked")
    length = (headers.get("Content-Length") or "").strip()
    if _DIGITS.fullmatch(length):
        return Framing("content-length", int(length))
    return Framing("none")


class Decoder:
    """Undoes a reply's content coding (none, or gzip/deflate) and tells whether the coded stream ended.

    :param headers: the reply's headers (case-insensitive mapping).
    :raises Unproven: the reply is in a coding that cannot be decoded here (its end cannot be proven).
    """

    #: Decoded bytes produced at most per step (a small gzip body may inflate a thousandfold).
    STEP = 256 * 1024

    def __init__(self, headers: Mapping[str, str]) -> None:
        transfer = [c for c in _codings(headers, "Transfer-Encoding") if c != "chunked"]
        content = _codings(headers, "Content-Encoding")
        unknown = transfer + [c for c in content if c not in ("gzip", "x-gzip", "deflate")]
        if unknown or len(content) > 1:
            raise Unproven(
                f"the reply is encoded ({', '.join(transfer + content)}), which is not decoded here, so its "
                "end cannot be proven (identity was asked for)",
                retryable=False,
            )
        self.coding = content[0] if content else None
        self._zlib = self._new() if self.coding else None

    @staticmethod
    def _new() -> zlib._Decompress:
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # a gzip or zlib header, told apart by zlib

    def decode(self, data: bytes) -> Iterator[bytes]:
        """The decoded bytes of ``data``, in steps of at most :attr:`STEP` bytes.

        :raises zlib.error: the coded stream is corrupt.
        """
        if self._zlib is None:
            yield data
            return
        while True:
            if self._zlib.eof:
                if not data:
                    return
                self._zlib = self._new()  # the next gzip member
            out = self._zlib.decompress(data, self.STEP)
            if out:
                yield out
            data = self._zlib.unused_data if self._zlib.eof else self._zlib.unconsumed_tail
            if not data and len(out) < self.STEP:  # a full step may leave output pending
                return

    @property
    def ended(self) -> bool:
        """Whether the coded stream reached its end (always, without a coding)."""
        return self._zlib is None or self._zlib.eof


def _codings(headers: Mapping[str, str], name: str) -> list[str]:
    """The codings a header lists (lower case), ``identity`` left out."""
    listed = (value.strip().lower() for value in (headers.get(name) or "").split(","))
    return [coding for coding in listed if coding and coding != "identity"]


def prove_complete(
    frame: Framing, wire_bytes: int, received: int, head: bytes, *, coding_ended: bool = True
) -> str:
    """Say how the body is proven whole, or raise :class:`Unproven`.

    :param frame: the reply's framing.
    :param wire_bytes: body bytes read off the connection (before any content decoding).
    :param received: body bytes after decoding (what is stored).
    :param head: the first bytes of the decoded body (up to :data:`HEAD_BYTES`).
    :param coding_ended: whether a content-encoded body's stream reached its end (:attr:`Decoder.ended`).
    :return: the proof, in words, for logs.
    :raises Unproven: the body is empty, shorter than announced, shorter than the WAV it carries says, or
        nothing proves where it ends.
    """
    if received == 0:
        raise Unproven("the reply carried no audio at all", retryable=True)
    if not coding_ended:
        raise Unproven("the reply's gzip stream stops before its end", retryable=True)
    declared, why_not = wav_size(head)
    if frame.kind in ("content-length", "chunked"):
        if frame.kind == "content-length" and wire_bytes != frame.length:
            raise Unproven(
                f"Content-Length announced {frame.length} bytes, {wire_bytes} arrived", retryable=True
            )
        if declared is not None and declared > received:  # whole as sent, but cut before it was sent
            raise Unproven(
                f"the reply was whole, but the WAV header inside declares {declared} bytes", retryable=True
            )
        return f"Content-Length {frame.length}" if frame.length is not None else "chunked framing"
    if declared is None:
        raise Unproven(
            "the reply had neither Content-Length nor chunked framing, and " + why_not, retryable=False
        )
    if declared != received:
        raise Unproven(
            f"no Content-Length or chunked framing, and the WAV header declares {declared} bytes",
            retryable=True,
        )
    return f"WAV header ({declared} bytes)"


def wav_size(head: bytes) -> tuple[int | None, str]:
    """The total size a WAV's header declares (RIFF size + 8), with its ``data`` chunk inside it.

    :param head: the first bytes of the file (all of it when shorter than :data:`HEAD_BYTES`).
    :return: ``(size, "")``, or ``(None, why the header proves no size)``. A file that ends inside its own
        header gets the RIFF size it declares (it cannot match what arrived).
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None, "the audio is not a WAV, whose header would give its length (MP3 has none)"
    riff = int.from_bytes(head[4:8], "little")
    if riff in _PLACEHOLDER_SIZES or riff < 4:
        return None, "the WAV header's RIFF size is a placeholder (a WAV streamed without its length)"
    total = riff + 8
    offset = 12
    while offset + 8 <= min(len(head), total):
        chunk, size = head[offset : offset + 4], int.from_bytes(head[offset + 4 : offset + 8], "little")
        end = offset + 8 + size
        if chunk == b"data":
            if end > total:
                return None, "the WAV header's data chunk does not fit in its RIFF size"
            return total, ""
        offset = end + (size & 1)  # chunks are padded to an even length
    if len(head) < min(total, HEAD_BYTES):  # the body ended inside its own header: shorter than declared
        return total, ""
    return None, "the WAV header has no data chunk within its first bytes"
