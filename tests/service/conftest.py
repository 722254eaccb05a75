"""Live servers on loopback (tests/live_server.py) with the tests' settings (bench.reliability.scenario BASE)."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.reliability.scenario import BASE
from service.settings import Settings
from tests.live_server import LiveServer


@pytest.fixture(scope="session")
def start_server() -> Iterator[Callable[..., LiveServer]]:
    """Factory: start_server(bundle_path, **settings) -> a running LiveServer, stopped at session end."""
    servers: list[LiveServer] = []

    def start(bundle: Path, **overrides) -> LiveServer:
        server = LiveServer(Settings(**{**BASE, "bundle_path": bundle, **overrides})).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def server(start_server, tiny_bundle: Path) -> LiveServer:
    """The shared server: tiny bundle, 64-px tiles with 16-px overlap."""
    return start_server(tiny_bundle)
