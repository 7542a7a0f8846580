"""Micro-batching: requests wait briefly in a queue and run through the model together.

A worker takes the first waiting request, then keeps collecting until ``max_batch`` inputs or
``max_wait_ms`` have passed (a request that would overflow the batch waits for the next one), and runs
the batch in a worker thread, off the event loop. Each request's results come back to it in order.
If a combined batch fails, it is split in halves and retried, so one bad request fails alone at a
cost of a few extra runs rather than falling back to one request at a time. Requests whose client
has gone away are skipped. ``close()`` stops taking requests and drains the queue. Should the worker
itself ever fail, every waiting request gets the error and the batcher refuses new ones (``healthy``
turns false, and ``/ready`` with it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class BatcherClosed(RuntimeError):
    """The batcher takes no new requests (shutting down, or its worker failed)."""


@dataclass
class _Request:
    inputs: Sequence[Any]
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    def __init__(
        self,
        run: Callable[[list[Any]], list[Any]],
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        """``run`` maps a list of inputs to a list of results of the same length (called in a thread)."""
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch must be at least 1 and max_wait_ms at least 0")
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000
        self.on_batch = on_batch
        self.queue: asyncio.Queue[_Request | None] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transferlm-infer")
        self.worker: asyncio.Task | None = None
        self.closed = False
        self.failure: BaseException | None = None
        self._carry: _Request | None = None  # taken from the queue but left for the next batch

    @property
    def healthy(self) -> bool:
        return self.worker is not None and not self.worker.done() and self.failure is None

    @property
    def depth(self) -> int:
        """Inputs waiting for the model (requests whose client left are not counted)."""
        waiting = [r for r in list(self.queue._queue) if r is not None]  # type: ignore[attr-defined]
        if self._carry is not None:
            waiting.append(self._carry)
        return sum(len(r.inputs) for r in waiting if not r.future.done())

    def start(self) -> None:
        self.worker = asyncio.get_running_loop().create_task(self._guarded_work())

    async def submit(self, inputs: Sequence[Any]) -> list[Any]:
        if self.closed or self.failure is not None:
            raise BatcherClosed("the server is shutting down" if self.closed else "the inference worker failed")
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Request(list(inputs), future))
        return await future

    async def close(self) -> None:
        """Take no new requests; finish every queued one; stop the worker."""
        self.closed = True
        await self.queue.put(None)
        if self.worker is not None:
            await asyncio.gather(self.worker, return_exceptions=True)
        self.executor.shutdown(wait=True)

    async def _guarded_work(self) -> None:
        try:
            await self._work()
        except Exception as error:  # a bug here must not leave requests waiting forever
            log.exception("the micro-batching worker failed; failing every waiting request")
            self.failure = error
            pending = [self._carry] if self._carry is not None else []
            while not self.queue.empty():
                pending.append(self.queue.get_nowait())
            for request in pending:
                if request is not None and not request.future.done():
                    request.future.set_exception(BatcherClosed(f"the inference worker failed: {error}"))

    async def _next(self, timeout: float | None) -> _Request | None:
        """The next live request (a carried-over one first); raises TimeoutError after ``timeout``."""
        while True:
            if self._carry is not None:
                request, self._carry = self._carry, None
            elif timeout is None:
                request = await self.queue.get()
            elif timeout <= 0:
                try:
                    request = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    raise asyncio.TimeoutError from None
            else:
                request = await asyncio.wait_for(self.queue.get(), timeout)
            if request is None or not request.future.done():  # skip requests whose client has gone
                return request

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self._next(None)
            if first is None:
                break
            batch, size = [first], len(first.inputs)
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                try:
                    nxt = await self._next(deadline - loop.time())
                except asyncio.TimeoutError:
                    break
                if nxt is None:
                    stopping = True  # finish this batch and whatever is still queued, then stop
                    break
                if size + len(nxt.inputs) > self.max_batch:
                    self._carry = nxt  # it starts the next batch
                    break
                batch.append(nxt)
                size += len(nxt.inputs)
            await self._run(loop, batch)
        while self._carry is not None or not self.queue.empty():  # drain
            rest = await self._next(0)
            if rest is not None:
                await self._run(loop, [rest])

    async def _run(self, loop, batch: list[_Request]) -> None:
        batch = [r for r in batch if not r.future.done()]
        if not batch:
            return
        inputs = [x for request in batch for x in request.inputs]
        began = time.perf_counter()
        try:
            results = await loop.run_in_executor(self.executor, self.run, inputs)
            if len(results) != len(inputs):
                raise RuntimeError(f"the model returned {len(results)} results for {len(inputs)} inputs")
        except Exception as error:
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(error)
                return
            half = len(batch) // 2  # isolate the failure in a few runs
            await self._run(loop, batch[:half])
            await self._run(loop, batch[half:])
            return
        if self.on_batch is not None:
            self.on_batch(len(inputs), time.perf_counter() - began)
        position = 0
        for request in batch:
            n = len(request.inputs)
            if not request.future.done():
                request.future.set_result(results[position:position + n])
            position += n
