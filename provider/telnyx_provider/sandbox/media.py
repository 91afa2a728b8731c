"""Small, valid WAV files the sandbox serves as recording media."""

from __future__ import annotations

import io
import math
import sys
import wave
from array import array
from functools import lru_cache

SAMPLE_RATE = 8000
MAX_SECONDS = 5  # keeps every file under ~160 kB whatever the recording's duration
TONE_HZ = 440.0


@lru_cache(maxsize=32)
def wav_bytes(seconds: int, channels: int = 1) -> bytes:
    """Return a WAV (8 kHz, 16-bit PCM) holding a quiet 440 Hz tone.

    :param seconds: wanted length; clamped to 1..``MAX_SECONDS`` so media stay small.
    :param channels: 1 (single) or 2 (dual: the same tone on both channels).
    """
    seconds = min(max(seconds, 1), MAX_SECONDS)
    step = 2 * math.pi * TONE_HZ / SAMPLE_RATE
    mono = [int(3000 * math.sin(step * i)) for i in range(SAMPLE_RATE * seconds)]
    samples = array("h", [value for value in mono for _ in range(channels)])
    if sys.byteorder == "big":  # WAV samples are little-endian
        samples.byteswap()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()
