"""Dynamic micro-batching: texts of concurrent requests answered in shared forward passes, off the event loop.

A request's texts join a queue; one loop task takes texts from its head into a batch until
``max_batch_texts`` texts, ``max_batch_tokens`` padded tokens (texts x the longest one, what the
model computes, as text-embeddings-inference counts), or ``max_wait_ms`` after the batch's first
text, whichever comes first. The batch runs in one worker thread (the model is not re-entrant),
sorted by length inside (the Predictor pads each sub-batch to its own longest text); each
request's future resolves when all its texts are answered. Beyond ``max_queue_texts`` waiting
texts a request is refused at once (backpressure) instead of growing the queue without bound.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence


class QueueFull(Exception):
    """The service is at capacity; the caller answers 503 with Retry-After."""


@dataclass
class _Pending:
    texts: list[str]
    tokens: list[int]  # estimated tokens per text
    future: asyncio.Future
    answers: list = field(default_factory=list)
    next_text: int = 0  # texts handed to a batch so far
    done_texts: int = 0


class MicroBatcher:
    """``await batcher.submit(texts)`` -> the answers of ``answer(texts)``, batched with other requests.

    ``answer(list[str]) -> list`` runs in a worker thread; ``count_tokens(text) -> int`` estimates a text's
    tokens for the token budget. ``on_batch(size, tokens, seconds)`` is told of each batch (metrics).
    """

    def __init__(self, answer: Callable[[list[str]], list], *, count_tokens: Callable[[str], int],
                 max_batch_texts: int = 64, max_batch_tokens: int = 8192, max_wait_ms: float = 5.0,
                 max_queue_texts: int = 4096, on_batch: Callable[[int, int, float], None] | None = None):
        self.answer, self.count_tokens = answer, count_tokens
        self.max_batch_texts, self.max_batch_tokens = max_batch_texts, max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue_texts = max_queue_texts
        self.on_batch = on_batch
        self.queue: deque[_Pending] = deque()
        self.queued_texts = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trustfm-model")

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Answer everything queued, then stop (graceful shutdown)."""
        while self.queue:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=True)

    async def submit(self, texts: Sequence[str]) -> list:
        texts = list(texts)
        if not texts:
            return []
        if self.queued_texts + len(texts) > self.max_queue_texts:
            raise QueueFull(f"{self.queued_texts} texts are waiting (limit {self.max_queue_texts})")
        pending = _Pending(texts, [self.count_tokens(t) for t in texts], asyncio.get_running_loop().create_future(),
                           answers=[None] * len(texts))
        self.queue.append(pending)
        self.queued_texts += len(texts)
        self._wake.set()
        return await pending.future

    def _take_batch(self) -> list[tuple[_Pending, int]]:
        """(request, text position) pairs for the next batch, from the head of the queue, within the budgets."""
        batch: list[tuple[_Pending, int]] = []
        longest = 0
        for pending in self.queue:
            while pending.next_text < len(pending.texts) and len(batch) < self.max_batch_texts:
                tokens = pending.tokens[pending.next_text]
                if batch and max(longest, tokens) * (len(batch) + 1) > self.max_batch_tokens:
                    return batch
                longest = max(longest, tokens)
                batch.append((pending, pending.next_text))
                pending.next_text += 1
            if len(batch) >= self.max_batch_texts:
                break
        return batch

    def _waiting_texts(self) -> int:
        return sum(len(p.texts) - p.next_text for p in self.queue)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting_texts():
                self._wake.clear()
                await self._wake.wait()
            # wait for more texts up to max_wait, unless a full batch is already there
            deadline = time.perf_counter() + self.max_wait
            while self._waiting_texts() < self.max_batch_texts and time.perf_counter() < deadline:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=max(deadline - time.perf_counter(), 0))
                except asyncio.TimeoutError:
                    break
            batch = self._take_batch()
            if not batch:
                continue
            texts = [p.texts[i] for p, i in batch]
            started = time.perf_counter()
            try:
                answers = await loop.run_in_executor(self._executor, self.answer, texts)
            except Exception as exc:  # noqa: BLE001 - the requests in this batch fail; the loop goes on
                for pending in {id(p): p for p, _ in batch}.values():
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                self._drop_finished(failed={id(p) for p, _ in batch})
                continue
            if self.on_batch is not None:
                self.on_batch(len(texts), max(p.tokens[i] for p, i in batch) * len(texts),
                              time.perf_counter() - started)
            for (pending, position), answer in zip(batch, answers):
                pending.answers[position] = answer
                pending.done_texts += 1
                if pending.done_texts == len(pending.texts) and not pending.future.done():
                    pending.future.set_result(pending.answers)
            self._drop_finished()

    def _drop_finished(self, failed: set[int] = frozenset()) -> None:
        while self.queue and (self.queue[0].future.done() or id(self.queue[0]) in failed):
            done = self.queue.popleft()
            self.queued_texts -= len(done.texts)
        # a failed or cancelled request further back leaves the queue too
        for pending in [p for p in self.queue if p.future.done()]:
            self.queue.remove(pending)
            self.queued_texts -= len(pending.texts)
