"""Micro-batching: requests wait briefly in a queue and run through the model together.

A worker takes the first waiting request, then keeps collecting until ``max_batch`` inputs or
``max_wait_ms`` have passed, and runs the batch in a worker thread, off the event loop. Each
request's results come back to it in order. If a combined batch fails, its requests are run again one
by one, so one bad request fails alone. ``close()`` stops taking requests and drains the queue.
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
    """The server is shutting down and takes no new requests."""


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

    @property
    def depth(self) -> int:
        """Inputs waiting in the queue."""
        return sum(len(r.inputs) for r in list(self.queue._queue) if r is not None)  # type: ignore[attr-defined]

    def start(self) -> None:
        self.worker = asyncio.get_running_loop().create_task(self._work())

    async def submit(self, inputs: Sequence[Any]) -> list[Any]:
        if self.closed:
            raise BatcherClosed("the server is shutting down")
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Request(list(inputs), future))
        return await future

    async def close(self) -> None:
        """Take no new requests; finish every queued one; stop the worker."""
        self.closed = True
        await self.queue.put(None)
        if self.worker is not None:
            await self.worker
        self.executor.shutdown(wait=True)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self.queue.get()
            if first is None:
                break
            batch, size = [first], len(first.inputs)
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                timeout = deadline - loop.time()
                try:
                    nxt = self.queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self.queue.get(), timeout)
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
                if nxt is None:
                    stopping = True  # finish this batch, then whatever is still queued, then stop
                    break
                batch.append(nxt)
                size += len(nxt.inputs)
            await self._run(loop, batch, size)
        # drain: requests that arrived before close() still get answers
        while not self.queue.empty():
            rest = self.queue.get_nowait()
            if rest is not None:
                await self._run(loop, [rest], len(rest.inputs))

    async def _run(self, loop, batch: list[_Request], size: int) -> None:
        began = time.perf_counter()
        inputs = [x for request in batch for x in request.inputs]
        try:
            results = await loop.run_in_executor(self.executor, self.run, inputs)
        except Exception as error:
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(error)
                return
            for request in batch:  # isolate the failure: each request alone
                await self._run(loop, [request], len(request.inputs))
            return
        if self.on_batch is not None:
            self.on_batch(size, time.perf_counter() - began)
        position = 0
        for request in batch:
            n = len(request.inputs)
            if not request.future.done():
                request.future.set_result(results[position:position + n])
            position += n

