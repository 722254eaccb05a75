"""The batcher with a fake backbone: cross-request batches, bounds, deadlines, isolation, drain."""

import asyncio
import threading
import time

import numpy as np
import pytest

from service.batcher import Batcher, DeadlineExceeded, InferenceError, QueueFull


class FakeBackbone:
    """out = image * prompt[0]; records every call; fails on NaN input; can be held by a gate."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[tuple[int, list[float]]] = []
        self.delay_s = delay_s
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, images: np.ndarray, prompts: np.ndarray) -> np.ndarray:
        self.gate.wait(10)
        time.sleep(self.delay_s)
        self.calls.append((len(images), prompts[:, 0].tolist()))
        if np.isnan(images).any():
            raise ValueError("NaN in input")
        return images * prompts[:, :1, None, None]


def tiles(n: int, value: float = 1.0, size: int = 4) -> list[np.ndarray]:
    return [np.full((3, size, size), value, np.float32) for _ in range(n)]


def prompt(value: float) -> np.ndarray:
    return np.full(5, value, np.float32)


async def with_batcher(fake: FakeBackbone, coro_fn, **kwargs):
    batcher = Batcher(fake, **{"max_batch": 8, "max_delay_s": 0.05, "capacity": 64, **kwargs})
    batcher.start()
    try:
        return await coro_fn(batcher)
    finally:
        await batcher.close(5)


async def submit(batcher: Batcher, images, vec, timeout_s=5.0):
    with batcher.admit(len(images)):
        job = await batcher.run(images, vec, timeout_s)
        return job.future.result()


def test_concurrent_requests_share_one_call_with_their_own_prompts():
    fake = FakeBackbone()

    async def go(batcher):
        return await asyncio.gather(*(submit(batcher, tiles(1), prompt(p)) for p in (2.0, 3.0, 4.0)))

    results = asyncio.run(with_batcher(fake, go))
    assert fake.calls == [(3, [2.0, 3.0, 4.0])]  # one call, mixed prompts
    assert [float(r[0].mean()) for r in results] == [2.0, 3.0, 4.0]  # each got its own rows back


def test_max_batch_splits_and_shapes_never_mix():
    fake = FakeBackbone()

    async def go(batcher):
        return await asyncio.gather(submit(batcher, tiles(10), prompt(1)), submit(batcher, tiles(2, size=8), prompt(1)))

    big, small = asyncio.run(with_batcher(fake, go))
    assert sorted(n for n, _ in fake.calls) == [2, 2, 8]
    assert len(big) == 10 and small[0].shape == (3, 8, 8)


def test_admission_is_bounded_in_tiles():
    fake = FakeBackbone()

    async def go(batcher):
        first = batcher.admit(50)
        assert batcher.saturated() is None  # room left: the HTTP layer reads the upload
        with pytest.raises(QueueFull, match="queue full"):
            batcher.admit(20)
        second = batcher.admit(14)  # exactly fills the capacity of 64
        assert "queue full" in batcher.saturated()  # the HTTP layer refuses before reading bodies
        first.release()
        first.release()  # idempotent
        assert batcher.in_flight == 14
        second.release()
        with batcher.admit(500):  # larger than the capacity, but nothing else in flight
            assert batcher.in_flight == 500

    asyncio.run(with_batcher(fake, go))


def test_deadline_withdraws_the_request():
    fake = FakeBackbone()
    fake.gate.clear()  # the backbone is stuck on the first batch

    async def go(batcher):
        stuck = asyncio.create_task(submit(batcher, tiles(1), prompt(1)))
        await asyncio.sleep(0.1)
        with pytest.raises(DeadlineExceeded):
            await submit(batcher, tiles(3), prompt(2), timeout_s=0.1)
        assert batcher.queued == 0 and batcher.in_flight == 1  # its tiles are gone, capacity returned
        fake.gate.set()
        await stuck

    asyncio.run(with_batcher(fake, go))
    assert all(p != [2.0] * n for n, p in fake.calls)  # the expired tiles never ran


def test_a_failing_batch_fails_only_the_bad_request():
    fake = FakeBackbone()

    async def go(batcher):
        good = submit(batcher, tiles(2, 1.0), prompt(1))
        bad = submit(batcher, tiles(1, float("nan")), prompt(1))
        return await asyncio.gather(good, bad, return_exceptions=True)

    good, bad = asyncio.run(with_batcher(fake, go))
    assert isinstance(bad, InferenceError)
    assert len(good) == 2
    assert fake.calls[0][0] == 3  # batched together first, then retried one by one


def test_close_drains_queued_work_and_refuses_new():
    fake = FakeBackbone(delay_s=0.02)

    async def go():
        batcher = Batcher(fake, max_batch=2, max_delay_s=0.001, capacity=64)
        batcher.start()
        pending = [asyncio.create_task(submit(batcher, tiles(2), prompt(1))) for _ in range(4)]
        await asyncio.sleep(0)
        await batcher.close(5)
        with pytest.raises(QueueFull, match="shutting down"):
            batcher.admit(1)
        return await asyncio.gather(*pending)

    results = asyncio.run(go())
    assert all(len(r) == 2 for r in results)


class CountingBackbone(FakeBackbone):
    """Also records the most calls that ran at the same time."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(delay_s)
        self.lock, self.running, self.most = threading.Lock(), 0, 0

    def __call__(self, images: np.ndarray, prompts: np.ndarray) -> np.ndarray:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return super().__call__(images, prompts)
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.parametrize("workers", [1, 3])
def test_workers_run_that_many_batches_at_once(workers):
    fake = CountingBackbone(delay_s=0.05)

    async def go(batcher):
        return await asyncio.gather(*(submit(batcher, tiles(1), prompt(p)) for p in range(1, 7)))

    results = asyncio.run(with_batcher(fake, go, max_batch=1, max_delay_s=0.0, workers=workers))
    assert fake.most == workers
    assert [float(r[0].mean()) for r in results] == [1, 2, 3, 4, 5, 6]  # each request its own rows


def test_close_waits_for_batches_running_on_several_workers():
    fake = FakeBackbone(delay_s=0.05)

    async def go():
        batcher = Batcher(fake, max_batch=1, max_delay_s=0.0, capacity=64, workers=2)
        batcher.start()
        pending = [asyncio.create_task(submit(batcher, tiles(1), prompt(1))) for _ in range(4)]
        await asyncio.sleep(0.01)
        await batcher.close(5)
        return await asyncio.gather(*pending)

    assert len(asyncio.run(go())) == 4
    assert len(fake.calls) == 4
