"""Every reliability scenario with full counts -> bench/results/reliability.md (quoted in the README).

The same functions the tests in tests/reliability call with reduced counts. Each scenario gets
its own `tap-restore serve` subprocess on loopback; the model is a tiny random one (what the
figures measure is the service around it), or --bundle.

Run: python -m bench.reliability.run [--quick] [--bundle artifacts/default]
"""

import argparse
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import RESULTS, CpuWatch, Report, command_line, cpu_info, machine_lines, write_markdown
from bench.reliability import fuzz, load, shutdown, soak
from bench.reliability.corpus import PROBES, run_corpus
from bench.reliability.scenario import bundle_for, serve
from bench.reliability.server import ServerExited

NAME = "reliability"
FULL = {"corpus_rounds": 5, "fuzz_examples": 500, "load_s": 5.0, "soak": 3000, "shutdown": 8}
QUICK = {"corpus_rounds": 1, "fuzz_examples": 50, "load_s": 3.0, "soak": 300, "shutdown": 8}
# Past capacity; far past it; a flood past what the event loop can triage with the client on the same CPUs.
OVERLOAD_FACTORS = (4.0, 12.0, 30.0)
FLOOD, FLOOD_SIGTERM_S = 30.0, 2.0  # graceful shutdown in the middle of the biggest flood
ACCESS_STATUS = re.compile(r'HTTP/1\.1" (\d{3})')  # uvicorn's access log
# glibc gives each inference/decode thread its own malloc arena; they fill over the first thousands of
# requests. Two arenas, a common setting for Python services, show how much of the growth that is.
FEWER_ARENAS = {"MALLOC_ARENA_MAX": "2"}
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")  # the ones inference speed hinges on


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def corpus_row(bundle: Path, folder: Path, rounds: int) -> list[str]:
    with serve(bundle, folder / "corpus.log") as server:
        run = run_corpus(server, rounds)
    statuses = Counter(run.statuses.values())
    spread = ", ".join(f"{count}×{status}" for status, count in sorted(statuses.items()))
    verdict = "all as documented" if not run.problems else f"**{len(run.problems)} wrong: {', '.join(run.problems)}**"
    rss = f"RSS {run.rss_warm_mb:.0f} → {run.rss_rounds_mb[-1]:.0f} MB ({run.rss_rounds_mb[-1] - run.rss_warm_mb:+.1f})"
    return [
        f"bad-input corpus: {len(PROBES)} probes × {rounds} rounds, one server",
        f"{verdict} ({spread}); a normal restore succeeded after each; {rss}",
    ]


def fuzz_row(bundle: Path, folder: Path, examples: int) -> list[str]:
    with serve(bundle, folder / "fuzz.log") as server:
        report = fuzz.fuzz(server.url, folder, examples)
        statuses = Counter(ACCESS_STATUS.findall(server.log()))
    spread = ", ".join(f"{count}×{status}" for status, count in sorted(statuses.items()))
    verdict = "0 failures" if not report.failures else f"**{len(report.failures)} failures**"
    return [
        f"schemathesis: every phase and check but positive_data_acceptance, {examples} examples/operation",
        f"{report.cases} cases, {verdict}, {report.accepted.get('POST /restore', 0)} successful restores checked "
        f"({spread})",
    ]


def overload_rows(bundle: Path, folder: Path, seconds: float) -> list[list[str]]:
    rows = []
    deadline = load.OVERLOAD_SETTINGS["request_timeout_s"]
    payload = soak.photo(512, 512, "JPEG", 0)
    for factor in OVERLOAD_FACTORS:
        with serve(bundle, folder / f"overload-{factor}.log", load.OVERLOAD_SETTINGS) as server:
            rate, report = load.overload(server.url, server.client, payload, factor, seconds, deadline)
            leaked = server.client.get("/readyz").json()["tiles_in_flight"]
        refused, served = report.latencies(503), report.latencies(200)
        spread = ", ".join(f"{count}×{status}" for status, count in sorted(report.statuses.items(), key=str))
        errors = Counter(o.transport_error.split(":")[0] for o in report.outcomes if o.status is None)
        if errors:
            spread += f" ({', '.join(f'{count}×{kind}' for kind, count in errors.items())})"
        rows.append(
            [
                f"overload {factor:g}× the one-at-a-time rate ({rate:.0f} req/s for {seconds:g} s, 512² JPEG, "
                "queue 4 tiles, batch 2)",
                f"{spread}; 503 p50 {_ms(load.percentile(refused, 50))} / p95 {_ms(load.percentile(refused, 95))}; "
                f"200 p95 {_ms(load.percentile(served, 95))} / max {_ms(max(served, default=0))} "
                f"(deadline {deadline} s); /healthz p95 {_ms(load.percentile(report.health_latencies_s, 95))} "
                f"({report.health_failures} failed); {leaked} tiles left in flight",
            ]
        )
    return rows


def soak_row(bundle: Path, folder: Path, requests: int, env: dict[str, str] | None = None) -> list[str]:
    with serve(bundle, folder / f"soak{len(env or {})}.log", soak.SETTINGS, env) as server:
        report = soak.soak(server, requests)
    setting = f", {' '.join(f'{k}={v}' for k, v in env.items())}" if env else ""
    return [
        f"soak: {requests} mixed restores (6 sizes up to 12 tiles, PNG/JPEG in, PNG/JPEG/WebP/JSON out, "
        f"5 modes){setting}",
        f"{len(report.failures)} failures; RSS medians per fifth after warm-up "
        f"{' → '.join(f'{mb:.0f}' for mb in report.rss_fifths_mb)} MB: **{report.growth:+.1%}** "
        f"(limit {soak.MAX_GROWTH:+.0%}; max {report.rss_max_mb:.0f} MB) in {report.wall_s:.0f} s",
    ]


def shutdown_row(bundle: Path, folder: Path, requests: int) -> list[str]:
    with serve(bundle, folder / "shutdown.log", shutdown.SETTINGS) as server:  # exits by itself
        report = shutdown.graceful_shutdown(server, soak.photo(700, 700, "JPEG", 0), requests)
    ok = sum(o.status == 200 for o in report.in_flight)
    late = report.late_while_alive
    refused = sum(o.transport_error.startswith("ConnectError") for o in late)
    unavailable = sum(o.status == 503 for o in late)
    return [
        f"SIGTERM with {requests} restores in flight",
        f"{ok}/{requests} in-flight → 200; {len(late)} new requests while draining: {refused} refused, "
        f"{unavailable}×503; exit status {report.returncode} after "
        f"**{report.exit_s:.2f} s**",
    ]


def flood_shutdown_row(bundle: Path, folder: Path, factor: float = FLOOD) -> list[str]:
    deadline = load.OVERLOAD_SETTINGS["request_timeout_s"]
    with serve(bundle, folder / "flood-shutdown.log", load.OVERLOAD_SETTINGS) as server:  # exits by itself
        report = shutdown.shutdown_under_flood(server, soak.photo(512, 512, "JPEG", 0), factor, FLOOD_SIGTERM_S)
    answered = [o for o in report.in_flight if o.status is not None]
    spread = ", ".join(f"{n}×{status}" for status, n in sorted(Counter(o.status for o in answered).items()))
    lost = len(report.in_flight) - len(answered)
    after = Counter(o.status or o.transport_error.split(":")[0] for o in report.after)
    return [
        f"SIGTERM {FLOOD_SIGTERM_S:g} s into a {factor:g}× flood ({report.rate_per_s:.0f} req/s, settings as the "
        "overload rows)",
        f"{len(report.in_flight)} requests in flight at SIGTERM: {spread}, {lost} without an answer; "
        f"200 max {_ms(max((o.latency_s for o in answered if o.status == 200), default=0))} (deadline {deadline} s); "
        f"{len(report.after)} sent while it drained: {', '.join(f'{n}×{k}' for k, n in after.items())}; "
        f"exit status {report.returncode} after **{report.exit_s:.2f} s** (bound: the {deadline} s deadline)",
    ]


def damaged_bundle_row(bundle: Path, folder: Path) -> list[str]:
    damaged = Path(shutil.copytree(bundle, folder / "damaged"))
    target = damaged / "backbone.onnx"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    started = time.monotonic()
    try:
        with serve(damaged, folder / "damaged.log"):
            return ["tampered backbone.onnx", "**the server started**"]
    except ServerExited as exc:
        named = any(str(target) in line and "sha256 mismatch" in line for line in exc.log.splitlines())
        return [
            "tampered backbone.onnx",
            f"start refused in {time.monotonic() - started:.1f} s, exit status {exc.returncode}, "
            f"error names the file: {'yes' if named else '**no**'}",
        ]


def main(argv: list[str] | None = None) -> Report:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the CI counts (about a minute)")
    parser.add_argument("--bundle", type=Path, help="default: a tiny random model exported to a temp dir")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else FULL
    watch = CpuWatch()
    with tempfile.TemporaryDirectory(prefix="tap-reliability-") as tmp:
        folder = Path(tmp)
        bundle = bundle_for(args.bundle, folder)
        rows = [
            corpus_row(bundle, folder, counts["corpus_rounds"]),
            fuzz_row(bundle, folder, counts["fuzz_examples"]),
            *overload_rows(bundle, folder, counts["load_s"]),
            soak_row(bundle, folder, counts["soak"]),
            soak_row(bundle, folder, counts["soak"], FEWER_ARENAS),
            shutdown_row(bundle, folder, counts["shutdown"]),
            flood_shutdown_row(bundle, folder),
            damaged_bundle_row(bundle, folder),
        ]
    flags = cpu_info().get("flags", "").split()
    model = f"bundle `{args.bundle}`" if args.bundle else "tiny random model (the service is what is measured)"
    header = [
        *machine_lines(1, watch, command_line("bench.reliability.run", argv)),
        f"- CPU flags (of {', '.join(SIMD_FLAGS)}): {' '.join(f for f in SIMD_FLAGS if f in flags) or 'none'}",
        f"- Model: {model}; every scenario runs its own `tap-restore serve` subprocess on 127.0.0.1; "
        "latencies are client-side, load generator on the same CPUs",
    ]
    body = ["| scenario | result |", "| --- | --- |", *(f"| {scenario} | {result} |" for scenario, result in rows)]
    path = write_markdown(args.out_dir, NAME, "Reliability: bad input, fuzzing, overload, soak, shutdown", header, body)
    return Report(NAME, path, [f"{row[0]}: {row[1]}" for row in rows])


if __name__ == "__main__":
    main()
