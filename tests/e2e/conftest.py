"""The service plus its web page on loopback, and a headless Debian Chromium driven by selenium.

Only the system chromium/chromedriver are used (Service(path) skips Selenium Manager, and
SE_OFFLINE forbids it anyway): `make test` installs them with apt where it can
(`.ci/system-deps.sh`); elsewhere the tests skip.
"""

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.reliability.scenario import BASE
from service.settings import Settings
from tests.live_server import LiveServer

API_KEY = "e2e-secret"
WINDOW = (1280, 900)
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
)


def _program(*names: str) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


@pytest.fixture(scope="session")
def start_ui_server(request: pytest.FixtureRequest) -> Iterator[Callable[..., LiveServer]]:
    """Factory: a LiveServer serving the web page (create_app includes its router).

    TAP_E2E_BUNDLE serves a real bundle instead of the tiny random one (for a nicer screenshot).
    """
    servers: list[LiveServer] = []

    def start(**overrides) -> LiveServer:
        bundle = os.environ.get("TAP_E2E_BUNDLE") or request.getfixturevalue("tiny_bundle")
        # 256-px tiles: the page's photos are a few hundred pixels, so one or a few tiles each.
        settings = Settings(**{**BASE, "tile_size": 256, "tile_overlap": 32, "bundle_path": bundle, **overrides})
        server = LiveServer(settings)
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def ui_server(start_ui_server) -> LiveServer:
    return start_ui_server()


@pytest.fixture(scope="session")
def keyed_server(start_ui_server) -> LiveServer:
    return start_ui_server(api_key=API_KEY)


@pytest.fixture(scope="session")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def browser(downloads: Path, tmp_path_factory: pytest.TempPathFactory):
    """One headless Chromium for the session; tests start from a fresh page load."""
    chromium, chromedriver = _program("chromium", "chromium-browser"), _program("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip("Chromium or chromedriver not installed (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield driver
    driver.quit()
