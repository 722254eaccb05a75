"""Open-loop load on loopback: requests arrive on a fixed schedule whatever the server does.

A closed loop (N clients, each waiting for its answer) slows down with the server and never
pushes it past capacity; a fixed arrival rate does, which is what the bounded queue is for.
A side task polls /healthz meanwhile, to show the event loop stays responsive.
"""

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from bench.reliability import rawhttp

HEALTH_EVERY_S = 0.02
# Past capacity on purpose: 4 tiles admitted at most, 2 per batch, one 512-px tile per request
# (inference, not parsing, dominates a request, so refusals stay cheap next to admissions).
OVERLOAD_SETTINGS: dict[str, object] = {
    "device": "cpu",
    "tile_size": 512,
    "tile_overlap": 32,
    "queue_size": 4,
    "max_batch": 2,
    "max_delay_ms": 5,
    "request_timeout_s": 10,
    "retry_after_s": 1,
    "intra_op_threads": 1,
    "prompt_reload_interval_s": 0,
}
FORM = {"degradation": "rain"}


@dataclass(frozen=True)
class Outcome:
    """One request as the client saw it; status None means no HTTP answer (refused, reset, timeout)."""

    status: int | None
    latency_s: float
    retry_after: str | None = None
    error_code: str | None = None
    transport_error: str = ""
    sent_at: float = 0.0  # time.perf_counter() when sent

    @property
    def answered_at(self) -> float:
        return self.sent_at + self.latency_s


@dataclass
class LoadReport:
    outcomes: list[Outcome]
    health_latencies_s: list[float]
    health_failures: int
    wall_s: float
    statuses: Counter = field(init=False)

    def __post_init__(self) -> None:
        self.statuses = Counter(o.status if o.status is not None else "no answer" for o in self.outcomes)

    def latencies(self, status: int) -> list[float]:
        return [o.latency_s for o in self.outcomes if o.status == status]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def send(client: httpx.AsyncClient, payload: bytes, form: dict[str, str]) -> Outcome:
    """POST /restore once with a JPEG `payload`; transport failures are outcomes, not exceptions."""
    started = time.perf_counter()
    try:
        response = await client.post("/restore", files={"image": ("photo.jpg", payload, "image/jpeg")}, data=form)
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
        return Outcome(None, time.perf_counter() - started, transport_error=error, sent_at=started)
    latency = time.perf_counter() - started
    code = None
    if response.headers.get("content-type", "").startswith("application/json") and response.status_code >= 400:
        code = response.json()["error"]["code"]
    return Outcome(response.status_code, latency, response.headers.get("retry-after"), code, sent_at=started)


async def send_raw(address: tuple[str, int], request: bytes) -> Outcome:
    """One prebuilt request (bench.reliability.rawhttp) on a new connection; failures are outcomes."""
    started = time.perf_counter()
    try:
        response = await rawhttp.exchange(*address, request)
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        return Outcome(None, time.perf_counter() - started, transport_error=error, sent_at=started)
    code = None
    if response.headers.get("content-type", "").startswith("application/json") and response.status >= 400:
        code = json.loads(response.body)["error"]["code"]
    latency = time.perf_counter() - started
    return Outcome(response.status, latency, response.headers.get("retry-after"), code, sent_at=started)


async def poll_health(address: tuple[str, int], stop: asyncio.Event) -> tuple[list[float], int]:
    """GET /healthz every HEALTH_EVERY_S until `stop`; (latencies of 200s, failures)."""
    latencies, failures = [], 0
    request = rawhttp.get("/healthz")
    while not stop.is_set():
        outcome = await send_raw(address, request)
        if outcome.status == 200:
            latencies.append(outcome.latency_s)
        else:
            failures += 1
        await asyncio.sleep(HEALTH_EVERY_S)
    return latencies, failures


async def _open_loop(
    url: str,
    payload: bytes,
    form: dict[str, str],
    rate_per_s: float,
    duration_s: float,
    timeout_s: float,
    keep_sending: Callable[[float], bool] = lambda elapsed_s: True,
) -> LoadReport:
    """The schedule stops early once `keep_sending(seconds since the start)` says so.

    Every request is its own connection, as independent clients are, and costs the generator a
    connect, a write and a read (bench.reliability.rawhttp): it shares the server's CPUs.
    """
    parts = urlsplit(url)
    address = (parts.hostname, parts.port)
    request = rawhttp.multipart_post("/restore", "image", "photo.jpg", payload, form)

    async def bounded() -> Outcome:
        try:
            return await asyncio.wait_for(send_raw(address, request), timeout_s)
        except TimeoutError:
            return Outcome(None, timeout_s, transport_error="TimeoutError", sent_at=time.perf_counter() - timeout_s)

    stop = asyncio.Event()
    health = asyncio.create_task(poll_health(address, stop))
    started = time.perf_counter()
    tasks = []
    for i in range(round(rate_per_s * duration_s)):
        await asyncio.sleep(max(0.0, started + i / rate_per_s - time.perf_counter()))
        if not keep_sending(time.perf_counter() - started):
            break
        tasks.append(asyncio.create_task(bounded()))
    outcomes = await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    stop.set()
    health_latencies, health_failures = await health
    return LoadReport(list(outcomes), health_latencies, health_failures, wall)


def open_loop(
    url: str,
    payload: bytes,
    form: dict[str, str],
    rate_per_s: float,
    duration_s: float,
    timeout_s: float,
    overall_timeout_s: float,
) -> LoadReport:
    """`rate_per_s` restores for `duration_s`; each bounded by `timeout_s`, the whole by `overall_timeout_s`."""
    coroutine = _open_loop(url, payload, form, rate_per_s, duration_s, timeout_s)
    return asyncio.run(asyncio.wait_for(coroutine, overall_timeout_s))


def service_time(client: httpx.Client, payload: bytes, repeats: int = 5) -> float:
    """Median seconds of one restore with nothing else in flight: the server's speed on this machine now."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.post("/restore", files={"image": ("photo.jpg", payload, "image/jpeg")}, data=FORM)
        response.raise_for_status()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def overload(
    url: str, client: httpx.Client, payload: bytes, factor: float, duration_s: float, deadline_s: float
) -> tuple[float, LoadReport]:
    """Arrivals at `factor` x the one-at-a-time rate (batching of 2 can at most double it): (rate, report)."""
    rate = factor / service_time(client, payload)
    return rate, open_loop(url, payload, FORM, rate, duration_s, deadline_s + 10, duration_s + deadline_s + 60)
