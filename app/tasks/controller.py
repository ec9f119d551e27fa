"""Task routes: submit transcription, speech and summary tasks (202), read them, their results, stats.

Every caller sees only their own tasks (by API key, Epistula hotkey or token); the admin token, and any
caller when auth is not configured, sees all of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Annotated

import anyio
import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_409_CONFLICT, HTTP_503_SERVICE_UNAVAILABLE

from app.auth.scopes import Scope
from app.http.context import principal_of
from app.http.inputs import InputError, StoredIdPath
from app.inference.audio import CHUNK, UploadError, receive_upload, remove_file
from app.tasks.schemas import (
    SummarizationRequest,
    TaskAccepted,
    TaskKind,
    TaskList,
    TaskStats,
    TaskStatus,
    TaskView,
    TTSRequest,
)
from app.tasks.service import TaskConflict, TaskInputError, TaskNotFound, TasksService, TaskUnavailable

MAX_LIST_LIMIT = 500
LimitQuery = Annotated[int, QueryParameter(ge=1, le=MAX_LIST_LIMIT, description="At most this many tasks.")]


class TaskConflictError(HTTPException):
    status_code = HTTP_409_CONFLICT


class TasksUnavailable(HTTPException):
    status_code = HTTP_503_SERVICE_UNAVAILABLE


def _service(request: Request) -> TasksService:
    service: TasksService = request.app.state.tasks
    return service


def _input_error(request: Request, field: str, message: str, status: int = 400) -> HTTPException:
    if status == 413:
        return HTTPException(
            status_code=413,
            detail=message,
            extra=[{"message": message, "key": field, "source": "body"}],
            headers={"Connection": "close"},
        )
    return InputError(message, field).to_http(request.scope)


async def _submitted(request: Request, call: Awaitable[TaskAccepted]) -> TaskAccepted:
    try:
        return await call
    except TaskInputError as exc:
        raise _input_error(request, exc.field, exc.message) from None
    except TaskUnavailable as exc:
        raise TasksUnavailable(str(exc), headers={"Retry-After": "60"}) from None


async def _file_chunks(path: str) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as file:
        while chunk := await file.read(CHUNK):
            yield chunk


class TasksController(Controller):
    path = "/api/v1"
    tags = ["tasks"]
    opt = {"scope": Scope.TASKS}

    @post(
        "/transcription",
        status_code=HTTP_202_ACCEPTED,
        summary="Submit a transcription task",
        # The file streams to disk under its own limit (PYLON_TASKS_MAX_UPLOAD_SIZE, 413 past it).
        request_max_body_size=None,
    )
    async def transcription(self, request: Request) -> TaskAccepted:
        """Multipart form: `audio_file` (WAV, MP3, FLAC or OGG, judged by its bytes; at most 50 MB, checked
        while it streams to disk), `source_language` (ISO 639-1) and `priority` (high, normal, low).
        Answers 202 with the task id; 400 names a wrong field, 413 an oversized file (nothing is kept)."""
        service = _service(request)
        try:
            upload = await receive_upload(
                request.stream(),
                request.headers.get("content-type", ""),
                file_field="audio_file",
                directory=service.upload_dir,
                max_size=service.settings.tasks.max_upload_size,
            )
        except UploadError as exc:
            raise _input_error(request, exc.field, exc.message, exc.status) from None
        try:
            unknown = sorted(set(upload.fields) - {"source_language", "priority"})
            if unknown:
                raise TaskInputError(unknown[0], f"unknown field {unknown[0]!r}")
            if "source_language" not in upload.fields:
                raise TaskInputError("source_language", "source_language is required")
            accepted = await _submitted(
                request,
                service.submit(
                    principal_of(request),
                    "transcription",
                    source_language=upload.fields["source_language"],
                    priority=upload.fields.get("priority", "normal"),
                    audio=upload.audio,
                ),
            )
        except TaskInputError as exc:
            remove_file(upload.audio.path)
            raise _input_error(request, exc.field, exc.message) from None
        except BaseException:
            remove_file(upload.audio.path)
            raise
        return accepted

    @post("/tts", status_code=HTTP_202_ACCEPTED, summary="Submit a text-to-speech task")
    async def tts(self, request: Request, data: JSONBody[TTSRequest]) -> TaskAccepted:
        """`{"text" (1-10,000 chars), "source_language", "priority"?, "voice"?}`; the result is a WAV."""
        return await _submitted(
            request,
            _service(request).submit(
                principal_of(request),
                "tts",
                source_language=data.source_language,
                priority=data.priority,
                text=data.text,
                voice=data.voice,
            ),
        )

    @post("/summarization", status_code=HTTP_202_ACCEPTED, summary="Submit a summarization task")
    async def summarization(self, request: Request, data: JSONBody[SummarizationRequest]) -> TaskAccepted:
        """`{"text" (50-50,000 chars), "source_language", "priority"?}`; the result is the summary text."""
        return await _submitted(
            request,
            _service(request).submit(
                principal_of(request),
                "summarization",
                source_language=data.source_language,
                priority=data.priority,
                text=data.text,
            ),
        )

    @get("/tasks", summary="List tasks")
    async def list_tasks(
        self,
        request: Request,
        status: FromQuery[TaskStatus | None] = None,
        kind: FromQuery[TaskKind | None] = None,
        limit: LimitQuery = 50,
    ) -> TaskList:
        """The caller's own tasks, newest first (the admin's: everyone's)."""
        return await _service(request).list(principal_of(request), status=status, kind=kind, limit=limit)

    @get("/tasks/stats", summary="Queue statistics")
    async def stats(self, request: Request) -> TaskStats:
        """Counts by status, pending tasks per priority, and for kinds served by a subnet its miners
        (total, available) and total stake from the metagraph."""
        return await _service(request).stats()

    @get("/tasks/{task_id:int}", summary="Get a task")
    async def get_task(self, request: Request, task_id: FromPath[StoredIdPath]) -> TaskView:
        """Status, attempts, timings, who answered and its scores, and the result (or its link)."""
        try:
            return await _service(request).get(principal_of(request), task_id)
        except TaskNotFound as exc:
            raise NotFoundException(str(exc)) from None

    @get("/tasks/{task_id:int}/result", summary="Get a task's result")
    async def get_result(self, request: Request, task_id: FromPath[StoredIdPath]) -> Response[bytes] | Stream:
        """The answer itself: audio streamed with its content type, or the text as JSON `{"text"}`.
        409 until the task is completed."""
        try:
            result = await _service(request).result(principal_of(request), task_id)
        except TaskNotFound as exc:
            raise NotFoundException(str(exc)) from None
        except TaskConflict as exc:
            raise TaskConflictError(str(exc)) from None
        if result.path is not None:
            if not await anyio.Path(result.path).exists():
                raise NotFoundException(f"task {task_id}'s result file is gone")
            headers = {"Content-Length": str(result.size)} if result.size is not None else {}
            return Stream(_file_chunks(result.path), media_type=result.content_type, headers=headers)
        return Response(
            msgspec.json.encode({"task_id": task_id, "text": result.text or ""}),
            media_type="application/json",
        )

    @delete("/tasks/{task_id:int}", status_code=200, summary="Cancel a pending task")
    async def cancel(self, request: Request, task_id: FromPath[StoredIdPath]) -> TaskView:
        """Cancel a task that has not started (or waits for a retry); 409 once it runs or has ended."""
        try:
            return await _service(request).cancel(principal_of(request), task_id)
        except TaskNotFound as exc:
            raise NotFoundException(str(exc)) from None
        except TaskConflict as exc:
            raise TaskConflictError(str(exc)) from None
