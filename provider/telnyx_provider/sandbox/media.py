"""Audio the sandbox serves as media: WAV (8 kHz, 16-bit PCM, a quiet 440 Hz tone) or MP3 (silence)."""

from __future__ import annotations

import io
import math
import sys
import wave
from array import array
from functools import lru_cache

SAMPLE_RATE = 8000
MAX_SECONDS = 5  # default cap: keeps every file under ~160 kB whatever the recording's duration
TONE_HZ = 440.0  # a whole number of periods per second, so one second repeats seamlessly


@lru_cache(maxsize=4)
def _one_second(channels: int) -> bytes:
    step = 2 * math.pi * TONE_HZ / SAMPLE_RATE
    mono = [int(3000 * math.sin(step * i)) for i in range(SAMPLE_RATE)]
    samples = array("h", [value for value in mono for _ in range(channels)])
    if sys.byteorder == "big":  # WAV samples are little-endian
        samples.byteswap()
    return samples.tobytes()


@lru_cache(maxsize=8)
def wav_bytes(seconds: int, channels: int = 1, cap: int = MAX_SECONDS) -> bytes:
    """Return a WAV holding ``seconds`` of tone (16,000 bytes per second and channel, plus a 44-byte header).

    :param seconds: wanted length; clamped to 1..``cap`` so media stay small unless a test asks otherwise.
    :param channels: 1 (single) or 2 (dual: the same tone on both channels).
    :param cap: the longest file served, in seconds.
    """
    seconds = min(max(seconds, 1), max(cap, 1))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(_one_second(channels) * seconds)
    return buffer.getvalue()


#: One MPEG-1 Layer III frame header: 32 kbit/s, 32 kHz, mono, no CRC; each frame holds 1,152 samples (36 ms)
#: in 144 bytes. Its side information and main data are zeros: a decoder plays silence.
_MP3_FRAME = bytes.fromhex("fffb18c0") + bytes(140)
_MP3_FRAMES_PER_SECOND = 32000 / 1152


@lru_cache(maxsize=8)
def mp3_bytes(seconds: int, cap: int = MAX_SECONDS) -> bytes:
    """Return an MP3 stream of ``seconds`` of silence (4,000 bytes per second): frames and nothing else.

    Like any MP3 it states no total length anywhere: only the transfer's framing tells where it ends.

    :param seconds: wanted length; clamped to 1..``cap``.
    :param cap: the longest file served, in seconds.
    """
    seconds = min(max(seconds, 1), max(cap, 1))
    return _MP3_FRAME * math.ceil(seconds * _MP3_FRAMES_PER_SECOND)
