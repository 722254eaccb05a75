"""Open-loop load on loopback: requests arrive on a fixed schedule whatever the server does.

A closed loop (N clients, each waiting for its answer) slows down with the server and never
pushes it past capacity; a fixed arrival rate does, which is what the bounded queue is for.
A side task polls /healthz meanwhile, to show the event loop stays responsive.
"""

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

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
        return Outcome(None, time.perf_counter() - started, transport_error=f"{type(exc).__name__}: {exc}")
    latency = time.perf_counter() - started
    code = None
    if response.headers.get("content-type", "").startswith("application/json") and response.status_code >= 400:
        code = response.json()["error"]["code"]
    return Outcome(response.status_code, latency, response.headers.get("retry-after"), code)


async def poll_health(client: httpx.AsyncClient, stop: asyncio.Event) -> tuple[list[float], int]:
    """GET /healthz every HEALTH_EVERY_S until `stop`; (latencies of 200s, failures)."""
    latencies, failures = [], 0
    while not stop.is_set():
        started = time.perf_counter()
        try:
            ok = (await client.get("/healthz")).status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok:
            latencies.append(time.perf_counter() - started)
        else:
            failures += 1
        await asyncio.sleep(HEALTH_EVERY_S)
    return latencies, failures


async def _open_loop(
    url: str, payload: bytes, form: dict[str, str], rate_per_s: float, duration_s: float, timeout_s: float
) -> LoadReport:
    # No connection cap: a client-side pool would queue requests and hide the server's answer.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with (
        httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as client,
        httpx.AsyncClient(base_url=url, timeout=timeout_s) as health_client,
    ):
        stop = asyncio.Event()
        health = asyncio.create_task(poll_health(health_client, stop))
        started = time.perf_counter()
        tasks = []
        for i in range(round(rate_per_s * duration_s)):
            await asyncio.sleep(max(0.0, started + i / rate_per_s - time.perf_counter()))
            tasks.append(asyncio.create_task(send(client, payload, form)))
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
