"""Graceful shutdown: SIGTERM while requests are in flight.

Promise: requests already admitted complete (200), new connections are refused (or get 503)
while the server drains, and the process then exits on its own, with its lifespan shutdown
complete, within a bound.
"""

import asyncio
import time
from dataclasses import dataclass

import httpx

from bench.reliability import load
from bench.reliability.load import Outcome, send
from bench.reliability.server import ServerProcess

# Slow enough to be caught mid-flight: a request is many 128-px tiles (49 for 700x700), two per batch,
# so the first one admitted cannot finish before the last one is admitted.
SETTINGS: dict[str, object] = {
    "device": "cpu",
    "tile_size": 128,
    "tile_overlap": 16,
    "max_batch": 2,
    "queue_size": 512,  # all 8 x 49 tiles admitted at once
    "intra_op_threads": 1,
    "prompt_reload_interval_s": 0,
}
PROBE_EVERY_S = 0.1
CLEAN_EXIT = (0,)  # `tap-restore serve` exits 0 after a graceful shutdown
# Logged by uvicorn after the lifespan shutdown (batcher drained and closed) returned.
SHUTDOWN_COMPLETE = "Application shutdown complete."


@dataclass(frozen=True)
class ShutdownReport:
    in_flight: list[Outcome]  # admitted before SIGTERM
    late: list[tuple[bool, Outcome]]  # (server process still alive when sent, outcome) for requests after SIGTERM
    returncode: int
    exit_s: float  # SIGTERM -> process gone
    log: str

    @property
    def late_while_alive(self) -> list[Outcome]:
        return [outcome for alive, outcome in self.late if alive]


async def _wait_admitted(client: httpx.AsyncClient, tiles: int, deadline: float) -> None:
    while (await client.get("/readyz")).json()["tiles_in_flight"] < tiles:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server never had {tiles} tiles in flight")
        await asyncio.sleep(0.01)


async def _scenario(server: ServerProcess, payload: bytes, requests: int, timeout_s: float) -> ShutdownReport:
    form = {"degradation": "rain"}
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=server.url, timeout=timeout_s) as client:
        tiles = (
            await client.post(
                "/restore", files={"image": ("a", payload)}, data=form, headers={"Accept": "application/json"}
            )
        ).json()["tiles"]
        in_flight = [asyncio.create_task(send(client, payload, form)) for _ in range(requests)]
        await _wait_admitted(client, tiles * requests, deadline)
        sent_at = server.terminate()
        late: list[tuple[bool, Outcome]] = []
        await asyncio.sleep(3 * PROBE_EVERY_S)  # uvicorn checks its exit flag every 0.1 s
        while server.process.poll() is None and time.monotonic() < deadline:
            async with httpx.AsyncClient(base_url=server.url, timeout=timeout_s) as fresh:  # a new connection
                alive = server.process.poll() is None
                late.append((alive, await send(fresh, payload, form)))
            await asyncio.sleep(PROBE_EVERY_S)
        outcomes = await asyncio.wait_for(asyncio.gather(*in_flight), max(0.0, deadline - time.monotonic()))
    while server.process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    exit_s = time.monotonic() - sent_at
    returncode = server.wait(max(0.0, deadline - time.monotonic()))
    return ShutdownReport(list(outcomes), late, returncode, exit_s, server.log())


def graceful_shutdown(
    server: ServerProcess, payload: bytes, requests: int = 8, timeout_s: float = 60.0
) -> ShutdownReport:
    """Admit `requests` restores of `payload`, SIGTERM the server, probe it until it exits."""
    return asyncio.run(_scenario(server, payload, requests, timeout_s))


@dataclass(frozen=True)
class FloodShutdownReport:
    """SIGTERM in the middle of an open-loop flood; outcomes split by when they were sent and answered."""

    rate_per_s: float
    before: list[Outcome]  # sent before SIGTERM, answered before it
    in_flight: list[Outcome]  # sent before SIGTERM, answered (or failed) after it
    after: list[Outcome]  # sent after SIGTERM, while the process was alive
    returncode: int
    exit_s: float  # SIGTERM -> process gone (to the flood's 1/rate tick)
    log: str


def shutdown_under_flood(
    server: ServerProcess, payload: bytes, factor: float, before_s: float, timeout_s: float = 60.0
) -> FloodShutdownReport:
    """Arrivals at `factor` x the one-at-a-time rate; SIGTERM after `before_s`; keep sending until the
    process is gone. The exit is bounded by the request deadline: every admitted request ends by it
    (200 or 504), uvicorn waits for them (at most its 30-s graceful timeout), then the batcher drains."""
    rate = factor / load.service_time(server.client, payload)
    server.client.close()
    signalled: list[float] = []  # perf_counter of SIGTERM, then of the first tick that found the process gone

    def keep_sending(elapsed_s: float) -> bool:
        if not signalled and elapsed_s >= before_s:
            server.terminate()
            signalled.append(time.perf_counter())
        if server.process.poll() is None:
            return True
        signalled.append(time.perf_counter())
        return False

    coroutine = load._open_loop(server.url, payload, load.FORM, rate, timeout_s, timeout_s, keep_sending)
    report = asyncio.run(asyncio.wait_for(coroutine, 2 * timeout_s))
    if len(signalled) != 2:
        raise TimeoutError(f"the server did not exit within {timeout_s:g} s of the flood's start")
    sigterm, gone = signalled
    return FloodShutdownReport(
        rate,
        [o for o in report.outcomes if o.answered_at < sigterm],
        [o for o in report.outcomes if o.sent_at < sigterm <= o.answered_at],
        [o for o in report.outcomes if o.sent_at >= sigterm],
        server.wait(10),
        gone - sigterm,
        server.log(),
    )
