"""Micro-batching: concurrent scoring requests grouped into single model calls.

The service puts every request in a queue; one task takes everything queued and scores it in
one call on a worker thread. While that call runs, new requests queue up, so under load the
groups grow by themselves and no request waits longer than one call plus its own.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

logger = logging.getLogger("rnnsent.serve")


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future


@dataclass
class BatchStats:
    """Counters that show how requests were grouped (reported by ``GET /health``)."""

    requests: int = 0
    model_calls: int = 0
    texts: int = 0
    largest_call_requests: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "model_calls": self.model_calls, "texts": self.texts,
                "largest_call_requests": self.largest_call_requests,
                "mean_requests_per_call": round(self.requests / self.model_calls, 3) if self.model_calls else 0.0}


class MicroBatcher:
    """Groups concurrent scoring requests into single calls of ``score``.

    ``score`` maps a list of texts to one result per text and runs on ``executor``. While a
    call runs, new requests queue up; the next call takes all of them (up to
    ``max_batch_texts`` texts), so under load the batch size grows by itself.
    """

    def __init__(self, score: Callable[[list[str]], Sequence[Any]], executor: ThreadPoolExecutor,
                 max_batch_texts: int = 1024, wait_seconds: float = 0.0) -> None:
        self.score = score
        self.executor = executor
        self.max_batch_texts = max_batch_texts
        self.wait_seconds = wait_seconds
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the batching task on the running event loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="rnnsent-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    @property
    def queued(self) -> int:
        """Requests waiting for the next model call."""
        return self._queue.qsize() if self._queue is not None else 0

    async def submit(self, texts: list[str]) -> list[Any]:
        """Score ``texts`` together with whatever else is queued; results in input order."""
        assert self._queue is not None, "MicroBatcher.start() was not called"
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(list(texts), future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        carried: _Pending | None = None
        while True:
            first = carried or await self._queue.get()
            carried = None
            if self.wait_seconds:
                await asyncio.sleep(self.wait_seconds)
            group, count = [first], len(first.texts)
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if count + len(item.texts) > self.max_batch_texts:
                    carried = item  # it opens the next call
                    break
                group.append(item)
                count += len(item.texts)
            await self._score_group(group)

    async def _score_group(self, group: list[_Pending]) -> None:
        texts = [text for item in group for text in item.texts]
        stats = self.stats
        stats.requests += len(group)
        stats.model_calls += 1
        stats.texts += len(texts)
        stats.largest_call_requests = max(stats.largest_call_requests, len(group))
        try:
            results = await asyncio.get_running_loop().run_in_executor(self.executor, self.score, texts)
        except Exception as error:  # a failed call fails its requests, never the batching task
            logger.exception("model call failed")
            for item in group:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        start = 0
        for item in group:
            if not item.future.done():  # the client may have gone away
                item.future.set_result(list(results[start:start + len(item.texts)]))
            start += len(item.texts)
