"""The worker that claims tasks (priority, then age) and runs them through the inference router.

Claims, leases, attempts and backoff are the shared job mechanism's (app/jobs/queue.py). Each kind is sent
as the OpenAI request a model server or the subnet backend answers, to the model PYLON_TASKS_ROUTES names:
transcription to `/v1/audio/transcriptions`, speech to `/v1/audio/speech` (WAV), summaries to
`/v1/chat/completions`. An attempt is bounded by the kind's timeout, and the lease by that plus a margin,
so a worker that dies mid-task leaves a lease that lapses (or, restarted, takes the task back at once).

A task's answer and the reference's (PYLON_TASKS_REFERENCES) are scored by app/tasks/scoring.py and handed
to the `ScoreSink`: that is where the gateway's miner records take them in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import anyio
import msgspec
import structlog
from sqlalchemy import func, select

from app.inference.audio import AudioFile, remove_file
from app.inference.errors import InferenceError
from app.inference.schemas import ChatCompletionRequest, SpeechRequest
from app.inference.service import Completion, InferenceService
from app.jobs.queue import backoff, new_owner
from app.tasks import scoring
from app.tasks.metrics import ATTEMPTS, QUEUE_DEPTH, TASK_DURATION
from app.tasks.models import PRIORITY_NAMES
from app.tasks.service import TasksService, tasks

log = structlog.get_logger(__name__)
PRUNE_INTERVAL = 60.0
LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian"}


class PermanentTaskError(Exception):
    """Retrying cannot help (the backend refused the request itself)."""


class Answer(msgspec.Struct, kw_only=True):
    """What one attempt produced."""

    backend: str | None
    content_type: str
    text: str | None = None
    path: str | None = None
    size: int | None = None
    miner: str | None = None


def _summary_prompt(language: str) -> str:
    name = LANGUAGE_NAMES.get(language, language)
    return f"Summarize the following text in {name}. Answer with the summary only."


def _chat_body(model: str, system: str, text: str) -> bytes:
    return msgspec.json.encode(
        {
            "model": model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}],
        }
    )


def _chat_text(body: bytes) -> str:
    try:
        data = json.loads(body)
        return str(data["choices"][0]["message"]["content"] or "")
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise PermanentTaskError("the backend's chat answer has no choices[0].message.content") from exc


def _transcript(completion: Completion) -> str:
    if completion.content_type.startswith("application/json"):
        try:
            return str(json.loads(completion.body)["text"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentTaskError("the backend's transcription answer has no text") from exc
    return completion.body.decode("utf-8", "replace")


class _Writer:
    """A result file written as its chunks arrive."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.file: IO[bytes] = path.open("wb")
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.size += len(chunk)

    def close(self) -> None:
        self.file.close()


class TasksWorker:
    """Claims due tasks one at a time and runs them; one per Pylon process, any number per database."""

    def __init__(
        self,
        service: TasksService,
        inference: InferenceService,
        sink: scoring.ScoreSink | None = None,
    ) -> None:
        self.service = service
        self.settings = service.settings.tasks
        self.inference = inference
        self.sink = sink or scoring.KeepOnTask()
        self.queue = service.queue.with_owner(new_owner(service.settings))
        self.id = self.queue.owner.tag
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pruned = 0.0

    # --------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="tasks-worker")

    async def stop(self) -> None:
        self._stopping.set()
        self.queue.wakeup.set()
        if self._task is not None:
            # An attempt in flight is cut; its lease lets this instance's next boot take it back at once.
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run(self) -> None:
        log.info("tasks_worker_started", worker=self.id)
        while not self._stopping.is_set():
            try:
                worked = await self.run_once()
                if time.monotonic() - self._pruned > PRUNE_INTERVAL:
                    self._pruned = time.monotonic()
                    await self.service.prune()
            except Exception:
                log.exception("tasks_worker_error", worker=self.id)
                worked = False
            if worked:
                continue
            self.queue.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.wakeup.wait(), self.settings.poll_interval)
        log.info("tasks_worker_stopped", worker=self.id)

    async def run_once(self) -> bool:
        """Claim and run at most one due task; False when none was due."""
        row = await self.claim()
        if row is None:
            return False
        await self.process(row)
        return True

    def _lease(self, row: Mapping[str, Any]) -> float:
        return self.settings.timeouts.get(row["kind"], 120.0) + self.settings.lease_margin

    async def claim(self) -> Mapping[str, Any] | None:
        row = await self.queue.claim(self._lease)
        if row is not None:
            log.info(
                "task_claimed", task_id=row["id"], kind=row["kind"], attempt=row["attempts"], worker=self.id
            )
            await self._record_attempt_start(row["id"])
        return row

    async def _record_attempt_start(self, task_id: int) -> None:
        async with self.queue.writing() as conn:
            await conn.execute(
                tasks.update().where(tasks.c.id == task_id).values(attempt_started_at=time.time())
            )

    async def update_depth(self) -> None:
        async with self.service.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(tasks.c.priority, func.count())
                    .where(tasks.c.status == "pending")
                    .group_by(tasks.c.priority)
                )
            ).all()
        depth = dict.fromkeys(PRIORITY_NAMES.values(), 0)
        depth.update({PRIORITY_NAMES.get(level, str(level)): int(count) for level, count in rows})
        for name, value in depth.items():
            QUEUE_DEPTH.labels(name).set(value)

    # ---------------------------------------------------------------------------------- running
    async def process(self, row: Mapping[str, Any]) -> None:
        """One attempt, bounded by the kind's timeout; then completed, a retry, or failed."""
        task_id, kind = row["id"], row["kind"]
        timeout = self.settings.timeouts.get(kind, 120.0)
        started = time.perf_counter()
        try:
            answer = await asyncio.wait_for(self.execute(row), timeout)
        except PermanentTaskError as exc:
            await self._fail(row, str(exc))
            return
        except InferenceError as exc:
            if exc.status_code in (429, 503):
                await self._retry(row, f"{exc.status_code}: {exc.message}")
            else:
                await self._fail(row, f"{exc.status_code}: {exc.message}")
            return
        except TimeoutError:
            await self._retry(row, f"the attempt passed the {kind} timeout of {timeout:g}s")
            return
        except Exception as exc:
            log.exception("task_attempt_unexpected_error", task_id=task_id)
            await self._retry(row, f"{type(exc).__name__}: {exc}")
            return
        seconds = time.perf_counter() - started
        scores = await self._score(row, answer, seconds, timeout)
        await self._complete(row, answer, scores)

    async def execute(self, row: Mapping[str, Any]) -> Answer:
        kind, model = row["kind"], row["model"]
        if kind == "transcription":
            return await self._transcribe(model, row)
        if kind == "tts":
            return await self._speak(model, row)
        return await self._summarize(model, row)

    async def _transcribe(self, model: str, row: Mapping[str, Any]) -> Answer:
        path = row["input_path"]
        if not path or not await anyio.Path(path).exists():
            raise PermanentTaskError("the task's audio file is gone")
        audio = AudioFile(
            path=path,
            size=row["input_size"] or (await anyio.Path(path).stat()).st_size,
            format=(row["input_type"] or "audio/wav").rsplit("/", 1)[-1],
            content_type=row["input_type"] or "audio/wav",
            filename=Path(path).name,
        )
        completion = await self.inference.transcribe(
            model, audio, {"model": model, "language": row["source_language"], "response_format": "json"}
        )
        if completion.status >= 400:
            raise PermanentTaskError(f"the backend refused the transcription ({completion.status})")
        return Answer(
            backend=completion.backend, content_type="text/plain; charset=utf-8", text=_transcript(completion)
        )

    async def _speak(self, model: str, row: Mapping[str, Any]) -> Answer:
        request = SpeechRequest(
            model=model, input=row["input_text"] or "", voice=row["voice"] or "alloy", response_format="wav"
        )
        raw = msgspec.json.encode(request)
        started = await self.inference.speech(raw, request)
        if isinstance(started, Completion):
            raise PermanentTaskError(f"the backend refused the speech request ({started.status})")
        path = self.service.result_dir / f"task-{row['id']}-{row['attempts']}.wav"
        writer = _Writer(path)
        try:
            async for chunk in started.chunks:
                writer.write(chunk)
        except BaseException:
            writer.close()
            remove_file(str(path))
            raise
        finally:
            await started.chunks.aclose()
        writer.close()
        return Answer(
            backend=started.backend, content_type=started.content_type, path=str(path), size=writer.size
        )

    async def _summarize(self, model: str, row: Mapping[str, Any]) -> Answer:
        completion = await self._chat(model, _summary_prompt(row["source_language"]), row["input_text"] or "")
        return Answer(
            backend=completion.backend,
            content_type="text/plain; charset=utf-8",
            text=_chat_text(completion.body),
        )

    async def _chat(self, model: str, system: str, text: str) -> Completion:
        raw = _chat_body(model, system, text)
        body = msgspec.json.decode(raw, type=ChatCompletionRequest)
        completion = await self.inference.complete("chat", raw, body)
        if completion.status >= 400:
            raise PermanentTaskError(f"the backend refused the chat request ({completion.status})")
        return completion

    # ---------------------------------------------------------------------------------- scoring
    async def _score(
        self, row: Mapping[str, Any], answer: Answer, seconds: float, limit: float
    ) -> dict[str, Any]:
        """Accuracy against the reference (when one is configured), speed, combined; sent to the sink."""
        kind = row["kind"]
        reference = self.settings.references.get(kind)
        accuracy: float | None = None
        if reference:
            try:
                accuracy = await asyncio.wait_for(self._accuracy(kind, reference, row, answer), limit)
            except Exception as exc:
                # No reference answer: the task still completes; its accuracy is unknown.
                log.warning("task_reference_failed", task_id=row["id"], reference=reference, error=str(exc))
        speed = scoring.speed_score(seconds, limit)
        score = scoring.TaskScore(
            kind=kind,
            model=row["model"],
            backend=answer.backend,
            miner=answer.miner,
            accuracy=None if accuracy is None else round(accuracy, 4),
            speed=round(speed, 4),
            score=None if accuracy is None else round(scoring.combined(accuracy, speed), 4),
            seconds=round(seconds, 4),
        )
        try:
            await self.sink.record(score)
        except Exception:
            log.exception("task_score_sink_failed", task_id=row["id"])
        return {
            "accuracy": score.accuracy,
            "speed": score.speed,
            "score": score.score,
            "seconds": score.seconds,
            "reference": reference or None,
        }

    async def _accuracy(self, kind: str, reference: str, row: Mapping[str, Any], answer: Answer) -> float:
        if kind == "transcription":
            expected = (await self._transcribe(reference, row)).text or ""
            return scoring.wer_accuracy(expected, answer.text or "")
        if kind == "tts":
            # The reference transcribes the answer's audio; compared with the text that was asked for.
            assert answer.path is not None
            spoken = {
                **row,
                "input_path": answer.path,
                "input_size": answer.size,
                "input_type": answer.content_type,
            }
            heard = (await self._transcribe(reference, spoken)).text or ""
            return scoring.wer_accuracy(row["input_text"] or "", heard)
        expected_summary = (await self._summarize(reference, row)).text or ""
        return scoring.similarity(expected_summary, answer.text or "")

    # --------------------------------------------------------------------------------- settling
    async def _complete(self, row: Mapping[str, Any], answer: Answer, scores: dict[str, Any]) -> None:
        now = time.time()
        done = await self.queue.finish(
            row["id"],
            "completed",
            backend=answer.backend,
            miner=answer.miner,
            scores=scores,
            result_text=answer.text,
            result_path=answer.path,
            result_type=answer.content_type,
            result_size=answer.size if answer.size is not None else len((answer.text or "").encode()),
            last_error=None,
            duration=round(now - row["submitted_at"], 4),
            expires_at=now + self.settings.result_ttl,
        )
        if done is None:
            # Another worker took the task over (this one outlived its lease): its answer is the one kept.
            remove_file(answer.path)
            return
        ATTEMPTS.labels(row["kind"], "ok").inc()
        TASK_DURATION.labels(row["kind"], "completed").observe(now - row["submitted_at"])
        log.info("task_completed", task_id=row["id"], kind=row["kind"], backend=answer.backend)
        await self.update_depth()

    async def _fail(self, row: Mapping[str, Any], error: str) -> None:
        now = time.time()
        done = await self.queue.finish(
            row["id"],
            "failed",
            last_error=error,
            duration=round(now - row["submitted_at"], 4),
            expires_at=now + self.settings.result_ttl,
        )
        ATTEMPTS.labels(row["kind"], "failed").inc()
        if done is not None:
            TASK_DURATION.labels(row["kind"], "failed").observe(now - row["submitted_at"])
            log.warning("task_failed", task_id=row["id"], kind=row["kind"], error=error)
        await self.update_depth()

    async def _retry(self, row: Mapping[str, Any], error: str) -> None:
        attempts = row["attempts"]
        if attempts >= self.settings.max_attempts:
            await self._fail(row, f"{error} (gave up after {attempts} attempts)")
            return
        delay = backoff(attempts, self.settings.retry_start, self.settings.retry_cap)
        await self.queue.retry(row["id"], error, delay)
        ATTEMPTS.labels(row["kind"], "retry").inc()
        log.warning("task_retry", task_id=row["id"], attempts=attempts, delay=delay, error=error)
