"""Audio uploads: a multipart body streamed to a file, its size capped while it arrives, its format sniffed.

Shared by `POST /v1/audio/transcriptions` (the inference gateway) and `POST /api/v1/transcription` (a
task): neither ever holds an upload whole in memory. The body is parsed as it arrives by `multipart`'s
push parser (the one Litestar itself depends on), the file part is written chunk by chunk into the data
dir, and the upload is refused (413) the moment it passes the limit, with what was written deleted. The
format is told from the file's first bytes, never from its name or the client's content type.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import msgspec
from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

# Sniffed format -> the content type it is stored and sent upstream with.
AUDIO_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
}
# Text fields beside the file are short (a language, a model name, a prompt).
MAX_FIELD_SIZE = 64 * 1024
MAX_SEGMENTS = 16


class UploadError(Exception):
    """The upload is refused: `status` 400 (malformed, wrong format) or 413 (too large); `field` names
    what is wrong."""

    def __init__(self, status: int, message: str, field: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


class AudioFile(msgspec.Struct, frozen=True, kw_only=True):
    """An uploaded audio file on disk."""

    path: str
    size: int
    format: str
    content_type: str
    filename: str


class Upload(msgspec.Struct, frozen=True, kw_only=True):
    audio: AudioFile
    fields: dict[str, str]


def sniff_audio(head: bytes) -> str | None:
    """wav, mp3, flac or ogg from a file's first bytes (at least 12), or None."""
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3":
        return "mp3"
    # An MPEG audio frame header: 11 sync bits, then a layer other than "reserved".
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return "mp3"
    return None


def boundary_of(content_type: str) -> str:
    kind, options = parse_options_header(content_type or "")
    if kind != "multipart/form-data" or not options.get("boundary"):
        raise UploadError(400, "expected a multipart/form-data body with a boundary", "Content-Type")
    return str(options["boundary"])


class _Sink:
    """The file part being written (plain file writes: small chunks, the page cache takes them)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"upload-{uuid.uuid4().hex}"
        self.file: IO[bytes] | None = self.path.open("wb")
        self.size = 0
        self.head = b""

    def write(self, data: bytes) -> None:
        assert self.file is not None
        if len(self.head) < 16:
            self.head += data[: 16 - len(self.head)]
        self.file.write(data)
        self.size += len(data)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


async def receive_upload(
    chunks: AsyncIterator[bytes],
    content_type: str,
    *,
    file_field: str,
    directory: Path,
    max_size: int,
) -> Upload:
    """Stream a multipart body: the part named `file_field` to a new file under `directory`, the other
    parts as text fields. Raises UploadError; on any error nothing stays on disk."""
    parser = PushMultipartParser(
        boundary_of(content_type), max_segment_count=MAX_SEGMENTS, max_header_count=8, strict=True
    )
    fields: dict[str, str] = {}
    sink: _Sink | None = None
    done: _Sink | None = None
    current: MultipartSegment | None = None
    text = bytearray()
    filename = ""
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            for event in parser.parse(chunk):
                if isinstance(event, MultipartSegment):
                    current = event
                    if event.name == file_field:
                        if event.filename is None or done is not None or sink is not None:
                            raise UploadError(400, f"{file_field} must be one file part", file_field)
                        sink, filename = _Sink(directory), event.filename
                    elif event.name in fields:
                        raise UploadError(400, f"the field {event.name} is sent twice", event.name)
                    text.clear()
                elif event:
                    assert current is not None
                    if sink is not None and current.name == file_field:
                        if sink.size + len(event) > max_size:
                            raise UploadError(
                                413, f"{file_field} is larger than the limit of {max_size} bytes", file_field
                            )
                        sink.write(event)
                    else:
                        text += event
                        if len(text) > MAX_FIELD_SIZE:
                            raise UploadError(400, f"the field {current.name} is too long", current.name)
                else:
                    assert current is not None
                    if sink is not None and current.name == file_field:
                        sink.close()
                        done, sink = sink, None
                    else:
                        try:
                            fields[current.name] = text.decode("utf-8")
                        except UnicodeDecodeError:
                            raise UploadError(
                                400, f"the field {current.name} is not UTF-8", current.name
                            ) from None
                    current = None
        parser.close()
        if done is None:
            raise UploadError(400, f"{file_field} is required (a file part)", file_field)
        audio_format = sniff_audio(done.head)
        if audio_format is None:
            raise UploadError(
                400,
                f"{file_field} is not WAV, MP3, FLAC or OGG audio (judged by its first bytes)",
                file_field,
            )
        audio = AudioFile(
            path=str(done.path),
            size=done.size,
            format=audio_format,
            content_type=AUDIO_TYPES[audio_format],
            filename=os.path.basename(filename)[:200] or f"audio.{audio_format}",
        )
        return Upload(audio=audio, fields=fields)
    except MultipartError as exc:
        _discard(sink, done)
        raise UploadError(400, f"the multipart body is malformed: {exc}", "body") from None
    except BaseException:
        _discard(sink, done)
        raise


def _discard(*sinks: _Sink | None) -> None:
    for sink in sinks:
        if sink is not None:
            sink.discard()


def remove_file(path: str | None) -> None:
    if path:
        Path(path).unlink(missing_ok=True)


CHUNK = 256 * 1024


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartBody:
    """A multipart/form-data body of text fields and one file, read from disk as it is sent."""

    def __init__(self, audio: AudioFile, fields: dict[str, str], file_field: str = "file") -> None:
        self.audio = audio
        self.boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        dash = f"--{self.boundary}\r\n"
        head = "".join(
            f'{dash}Content-Disposition: form-data; name="{_quote(name)}"\r\n\r\n{value}\r\n'
            for name, value in fields.items()
        )
        head += (
            f'{dash}Content-Disposition: form-data; name="{file_field}"; filename="{_quote(audio.filename)}"'
            f"\r\nContent-Type: {audio.content_type}\r\n\r\n"
        )
        self.head = head.encode()
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.length = len(self.head) + audio.size + len(self.tail)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        file = await asyncio.to_thread(Path(self.audio.path).open, "rb")
        try:
            while chunk := await asyncio.to_thread(file.read, CHUNK):
                yield chunk
        finally:
            file.close()
        yield self.tail
