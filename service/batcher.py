"""Dynamic batching: tiles from concurrent requests run together in one backbone call.

N requests in -> N results or N individual errors out. A request `admit`s its tile count
against a bounded capacity (`QueueFull` at once when over), then `run`s its tiles and
awaits one future. A single asyncio task gathers same-shaped tiles, oldest first, up to
`max_batch` or until the oldest has waited `max_delay`, and runs them in a worker thread,
so the event loop (and the health checks) stay responsive. With `workers` > 1 that many
batches run at once (the engine holds one onnxruntime session per worker): on a CPU, sessions
of one thread each scale better than one session of many threads. A failing batch is
retried one item at a time, so only the request with the bad input fails.
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service import metrics

log = logging.getLogger(__name__)

RunBatch = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (N,3,H,W), (N,D) -> (N,3,H,W)


class QueueFull(RuntimeError):
    """Capacity exhausted (or shutting down): try again later."""


class DeadlineExceeded(TimeoutError):
    """The request's deadline passed before all of its tiles were restored."""


class InferenceError(RuntimeError):
    """The backbone failed on this request's input."""


@dataclass
class Ticket:
    """Capacity reserved by one request; release it exactly once (use as a context manager)."""

    batcher: "Batcher"
    tiles: int
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.batcher._release(self.tiles)

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class Job:
    """One request's tiles; `future` resolves to the N restored (3, H, W) arrays, in order."""

    future: asyncio.Future
    outputs: list
    remaining: int
    queue_wait_s: float = 0.0
    inference_s: float = 0.0


@dataclass
class Item:
    job: Job
    index: int
    image: np.ndarray  # (3, H, W)
    prompt: np.ndarray  # (D,)
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.image.shape


class Batcher:
    def __init__(
        self,
        run_batch: RunBatch,
        max_batch: int = 8,
        max_delay_s: float = 0.005,
        capacity: int = 512,
        workers: int = 1,
    ) -> None:
        self.run_batch = run_batch  # thread-safe for `workers` concurrent calls
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.capacity = capacity  # tiles admitted and not finished
        self._in_flight = 0
        self._pending: deque[Item] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tap-infer")
        self._free_workers = asyncio.Semaphore(workers)
        self._running: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None
        self._closing = False

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def queued(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="tap-batcher")

    async def close(self, drain_timeout_s: float = 30.0) -> None:
        """Refuse new work, let queued tiles finish (up to the timeout), then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), drain_timeout_s)
            except TimeoutError:
                log.warning("batcher drain timed out with %d tiles queued", len(self._pending))
                self._task.cancel()
                for item in self._pending:
                    self._fail(item.job, QueueFull("service is shutting down"))
                self._pending.clear()
        if self._running:
            await asyncio.wait(self._running)
        self._executor.shutdown(wait=True)

    def saturated(self) -> str | None:
        """Why no request can be admitted right now (any size), or None: lets the HTTP layer
        refuse before reading an upload it could not queue."""
        if self._closing:
            return "service is shutting down"
        if self._in_flight >= self.capacity:
            return f"queue full ({self._in_flight} tiles in flight, capacity {self.capacity})"
        return None

    def admit(self, tiles: int) -> Ticket:
        """Reserve capacity for `tiles` items or raise QueueFull.

        A request larger than the whole capacity is admitted only when nothing else is in
        flight, so big images are served (slowly) rather than refused forever.
        """
        if self._closing:
            raise QueueFull("service is shutting down")
        if self._in_flight + tiles > self.capacity and self._in_flight > 0:
            raise QueueFull(f"queue full ({self._in_flight} tiles in flight, capacity {self.capacity})")
        self._in_flight += tiles
        return Ticket(self, tiles)

    async def run(self, images: Sequence[np.ndarray], prompt: np.ndarray, timeout_s: float | None = None) -> Job:
        """Restore N (3, H, W) images under one (D,) prompt; returns the finished Job.

        Raises DeadlineExceeded (its tiles are withdrawn), InferenceError or QueueFull.
        """
        if self._task is None or self._task.done():
            raise QueueFull("service is shutting down")  # nobody would run these tiles
        loop = asyncio.get_running_loop()
        job = Job(loop.create_future(), [None] * len(images), len(images))
        for index, image in enumerate(images):
            self._pending.append(Item(job, index, image, prompt))
        metrics.QUEUE_DEPTH.set(len(self._pending))
        self._wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(job.future), timeout_s)
        except TimeoutError:
            self._withdraw(job)
            raise DeadlineExceeded(f"not finished within {timeout_s:.2f} s") from None
        except asyncio.CancelledError:  # client gone: don't waste the accelerator on it
            self._withdraw(job)
            raise
        return job

    def _release(self, tiles: int) -> None:
        self._in_flight -= tiles
        if self._closing:
            self._wakeup.set()  # the drain may be waiting for the last tickets

    def _withdraw(self, job: Job) -> None:
        if not job.future.done():
            job.future.cancel()
        self._pending = deque(item for item in self._pending if item.job is not job)
        metrics.QUEUE_DEPTH.set(len(self._pending))

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing and self._in_flight <= 0:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._free_workers.acquire()
            batch = []
            if self._pending:  # withdrawn while waiting for a worker?
                await self._gather()
                batch = self._take()
                metrics.QUEUE_DEPTH.set(len(self._pending))
            if not batch:
                self._free_workers.release()
                continue
            task = loop.create_task(self._execute_then_free(loop, batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _execute_then_free(self, loop: asyncio.AbstractEventLoop, batch: list[Item]) -> None:
        try:
            await self._execute(loop, batch)
        finally:
            self._free_workers.release()

    async def _gather(self) -> None:
        """Wait until max_batch same-shape tiles are queued or the oldest waited max_delay."""
        first = self._pending[0]
        deadline = first.enqueued + self.max_delay_s
        while not self._closing:
            same = sum(1 for item in self._pending if item.shape == first.shape)
            remaining = deadline - time.perf_counter()
            if same >= self.max_batch or remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[Item]:
        """Up to max_batch live items shaped like the oldest one, oldest first."""
        shape = self._pending[0].shape
        batch, rest = [], deque()
        for item in self._pending:
            if item.job.future.done():
                continue
            if item.shape == shape and len(batch) < self.max_batch:
                batch.append(item)
            else:
                rest.append(item)
        self._pending = rest
        return batch

    async def _execute(self, loop: asyncio.AbstractEventLoop, batch: list[Item]) -> None:
        started = time.perf_counter()
        for item in batch:
            wait = started - item.enqueued
            metrics.QUEUE_WAIT.observe(wait)
            item.job.queue_wait_s = max(item.job.queue_wait_s, wait)
        images = np.stack([item.image for item in batch])  # (N, 3, H, W)
        prompts = np.stack([item.prompt for item in batch])  # (N, D)
        try:
            outputs = await loop.run_in_executor(self._executor, self.run_batch, images, prompts)
            elapsed = time.perf_counter() - started
            metrics.INFERENCE_DURATION.observe(elapsed)
            metrics.BATCH_SIZE.observe(len(batch))
            for job in {id(item.job): item.job for item in batch}.values():
                job.inference_s += elapsed
            for item, out in zip(batch, outputs, strict=True):
                self._deliver(item, out)
        except Exception as exc:
            if len(batch) == 1:
                log.exception("inference failed on a single tile")
                self._fail(batch[0].job, InferenceError(f"inference failed: {exc}"))
                return
            log.warning("batch of %d failed (%s); retrying one by one", len(batch), exc)
            for item in batch:
                if not item.job.future.done():
                    await self._execute(loop, [item])

    def _deliver(self, item: Item, output: np.ndarray) -> None:
        job = item.job
        if job.future.done():
            return
        job.outputs[item.index] = output
        job.remaining -= 1
        if job.remaining == 0:
            job.future.set_result(job.outputs)

    def _fail(self, job: Job, exc: Exception) -> None:
        if not job.future.done():
            job.future.set_exception(exc)
        self._pending = deque(item for item in self._pending if item.job is not job)
