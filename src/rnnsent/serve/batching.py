"""Micro-batching: concurrent scoring requests grouped into single model calls.

The service puts every request in a queue; one task takes everything queued and scores it in
one call on a worker thread. While that call runs, new requests queue up, so under load the
groups grow by themselves and no request waits longer than one call plus its own.

:class:`SerialWorker` runs other slow jobs (explanations) one at a time on a thread of their
own, so that they never hold up the batcher. Both drop queued work whose client has gone
before it starts.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

logger = logging.getLogger("rnnsent.serve")

GoneCheck = Callable[[], Awaitable[bool]]  # true once the client has disconnected


class ClientGone(Exception):
    """The client disconnected before its queued work started; the work was dropped."""


class DeadlineExceeded(Exception):
    """A job did not finish within its deadline."""


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future
    is_gone: GoneCheck | None = None


@dataclass
class BatchStats:
    """Counters that show how requests were grouped (reported by ``GET /health``)."""

    requests: int = 0
    model_calls: int = 0
    texts: int = 0
    largest_call_requests: int = 0
    dropped_requests: int = 0  # queued requests whose client left before their call

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "model_calls": self.model_calls, "texts": self.texts,
                "largest_call_requests": self.largest_call_requests, "dropped_requests": self.dropped_requests,
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

    async def submit(self, texts: list[str], is_gone: GoneCheck | None = None) -> list[Any]:
        """Score ``texts`` together with whatever else is queued; results in input order.

        ``is_gone`` is asked just before the call that would score them: if the client has
        disconnected by then, the texts are dropped and :class:`ClientGone` is raised.
        """
        assert self._queue is not None, "MicroBatcher.start() was not called"
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(list(texts), future, is_gone))
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
            group = [item for item in group if not await self._abandoned(item)]
            if group:
                await self._score_group(group)

    async def _abandoned(self, item: _Pending) -> bool:
        """Whether ``item``'s client has gone (its future then fails with :class:`ClientGone`)."""
        gone = item.future.done()
        if not gone and item.is_gone is not None:
            try:
                gone = await item.is_gone()
            except Exception:  # a failing check must not stop the batcher; score the item
                logger.exception("disconnect check failed")
        if gone:
            self.stats.dropped_requests += 1
            if not item.future.done():
                item.future.set_exception(ClientGone())
        return gone

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


class SerialWorker:
    """Runs jobs one at a time, in arrival order, on a thread of its own.

    Each job has a deadline: one still waiting when it passes never starts, and its caller
    gets :class:`DeadlineExceeded`; one already running when it passes cannot be stopped, so
    it finishes in the background (the next job starts after it) while its caller gets
    :class:`DeadlineExceeded` at once. A job whose client has gone before it starts is
    dropped (:class:`ClientGone`).
    """

    def __init__(self, thread_name: str = "rnnsent-worker") -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._lock: asyncio.Lock | None = None
        self.dropped = 0  # jobs not started: client gone or deadline passed

    async def run(self, job: Callable[[], Any], timeout: float, is_gone: GoneCheck | None = None) -> Any:
        loop = asyncio.get_running_loop()
        if self._lock is None:
            self._lock = asyncio.Lock()
        lock = self._lock
        deadline = loop.time() + timeout
        try:
            await asyncio.wait_for(lock.acquire(), timeout)
        except TimeoutError:
            self.dropped += 1
            raise DeadlineExceeded() from None
        held = True
        try:
            if is_gone is not None and await is_gone():
                self.dropped += 1
                raise ClientGone()
            if loop.time() >= deadline:
                self.dropped += 1
                raise DeadlineExceeded()
            future = loop.run_in_executor(self.executor, job)
            held = False  # from here the lock is released when the job ends, not when its caller stops waiting
            future.add_done_callback(lambda done: (lock.release(), done.cancelled() or done.exception()))
            try:
                return await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise DeadlineExceeded() from None
        finally:
            if held:
                lock.release()

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
