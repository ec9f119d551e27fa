"""Real audio for tests and the fake model server, made with the standard library (`wave`).

`text_to_wav` writes a 16 kHz mono 16-bit WAV that carries its text: a marker tone, then one 20 ms tone per
character (100 Hz + 50 Hz per step above the space character, a whole number of cycles per tone).
`wav_to_text` reads it back by counting zero crossings per tone, so the fake server's "speech" can be
"transcribed" again, which is how a speech task's accuracy is measured (transcribe the audio, compare).
Any other audio gets a transcript derived from a hash of its samples: deterministic, content-dependent.
"""

from __future__ import annotations

import io
import itertools
import math
import struct
import wave

RATE = 16_000
SEGMENT = 320  # samples per character: 20 ms
# Three tones that open every file this module writes (the highest step, 94, still decodes exactly).
MARKER = (94, 0, 94)


def _make_tone(step: int) -> list[int]:
    frequency = 100 + 50 * step
    return [round(12000 * math.sin(2 * math.pi * frequency * n / RATE + 0.3)) for n in range(SEGMENT)]


TONES = [_make_tone(step) for step in range(95)]


def _wav(samples: list[int], rate: int = RATE) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    return out.getvalue()


def text_to_wav(text: str) -> bytes:
    samples = [sample for step in MARKER for sample in TONES[step]]
    for char in text:
        code = ord(char) if 32 <= ord(char) <= 126 else ord("?")
        samples += TONES[code - 32]
    return _wav(samples)


def tone_wav(frequency: float = 440.0, seconds: float = 1.0, rate: int = 8000) -> bytes:
    count = int(rate * seconds)
    return _wav([round(8000 * math.sin(2 * math.pi * frequency * n / rate)) for n in range(count)], rate)


def _steps(samples: tuple[int, ...]) -> list[int]:
    steps = []
    for start in range(0, len(samples) - SEGMENT + 1, SEGMENT):
        segment = samples[start : start + SEGMENT]
        crossings = sum(1 for a, b in itertools.pairwise(segment) if (a >= 0) != (b >= 0))
        # A crossing between the last sample and the next tone is not seen: the count is exact or one short.
        steps.append(round((crossings - 4) / 2 + 0.25))
    return steps


def wav_to_text(data: bytes) -> str | None:
    """The text a `text_to_wav` file carries, or None for any other audio."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (RATE, 1, 2):
                return None
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError):
        return None
    samples = struct.unpack(f"<{len(frames) // 2}h", frames[: len(frames) // 2 * 2])
    steps = _steps(samples)
    if tuple(steps[: len(MARKER)]) != MARKER:
        return None
    return "".join(chr(32 + step) if 0 <= step <= 94 else "?" for step in steps[len(MARKER) :])


def wav_frames(data: bytes) -> bytes | None:
    """A WAV file's samples, or None when it is not WAV."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            return wav.readframes(wav.getnframes())
    except (wave.Error, EOFError):
        return None
