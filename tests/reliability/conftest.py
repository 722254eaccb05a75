"""Servers for the reliability tests: `tap-restore serve` subprocesses, so memory and signals are real.

Settings start from bench.reliability.scenario BASE (64-px tiles, 2 MB uploads, 10 MP), which
the reused corpus expects; each test overrides what its scenario needs.
"""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.reliability import scenario
from bench.reliability.server import ServerProcess


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: serve(bundle, **settings) -> a ready ServerProcess; stopped and reaped after the test."""
    servers: list[ServerProcess] = []

    def start(bundle: Path, **settings: object) -> ServerProcess:
        server = scenario.serve(bundle, tmp_path / f"server-{len(servers)}.log", settings)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="session")
def shared_server(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the corpus and the fuzzer: hostile input must not need a fresh process."""
    with scenario.serve(tiny_bundle, tmp_path_factory.mktemp("server") / "server.log") as process:
        yield process
