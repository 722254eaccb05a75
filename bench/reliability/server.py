"""`tap-restore serve` as a subprocess: the real CLI on a real port, with a PID whose memory and signals we own.

The server binds port 0 and the port is read back from its log, so parallel runs never race
for a port. Its PID is read from the log too, so a wrapper (strace) may sit in front of it.
"""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import httpx

STARTED = re.compile(r"Started server process \[(\d+)\]")
RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
POLL_S = 0.05


class ServerExited(RuntimeError):
    """The server ended before it was ready: its exit status and everything it logged."""

    def __init__(self, returncode: int, log: str) -> None:
        super().__init__(f"server exited with status {returncode} before it was ready; log tail:\n{log[-3000:]}")
        self.returncode = returncode
        self.log = log


def loopback_client(url: str, timeout_s: float = 60.0) -> httpx.Client:
    """A client that opens a fresh connection per request.

    uvicorn closes a keep-alive connection after 5 s idle; a pooled client that picks it up at
    that moment gets `Connection reset by peer`. A loopback connect costs well under a millisecond.
    """
    return httpx.Client(base_url=url, timeout=timeout_s, limits=httpx.Limits(max_keepalive_connections=0))


def settings_env(settings: dict[str, object]) -> dict[str, str]:
    """Service settings -> TAP_* environment variables (lists comma-joined, as Settings parses them)."""
    return {
        f"TAP_{key.upper()}": ",".join(value) if isinstance(value, list | tuple) else str(value)
        for key, value in settings.items()
    }


def rss_mb(pid: int) -> float:
    """Resident memory of a live process, from /proc/<pid>/status VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class ServerProcess:
    """One server subprocess on 127.0.0.1; use as a context manager (stopped and reaped on exit).

    Args:
        settings: service settings (TAP_* variables); the parent's own TAP_* are not inherited.
        env: extra environment variables (HOME, TMPDIR, ...).
        prefix: a wrapper command, e.g. strace; the server's own PID is still the one signalled.
    """

    def __init__(
        self,
        bundle: Path,
        log_path: Path,
        settings: dict[str, object] | None = None,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.bundle = Path(bundle)
        self.log_path = Path(log_path)
        self.settings = settings or {}
        self.cwd = cwd
        self.env = env or {}
        self.prefix = list(prefix)
        self.process: subprocess.Popen | None = None
        self.pid = 0
        self.url = ""
        self.client: httpx.Client | None = None

    def start(self, timeout_s: float = 60.0) -> "ServerProcess":
        """Launch and wait for /readyz; raises ServerExited if the process ends first."""
        environment = {key: value for key, value in os.environ.items() if not key.startswith("TAP_")}
        environment |= settings_env(self.settings) | self.env
        command = [
            *self.prefix,
            sys.executable,
            "-m",
            "service.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--bundle",
            str(self.bundle),
            "--log-level",
            "info",
        ]
        with self.log_path.open("wb") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                command, cwd=self.cwd, env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            self._wait_ready(time.monotonic() + timeout_s)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self, deadline: float) -> None:
        while not self.url:
            if self.process.poll() is not None:
                raise ServerExited(self.process.returncode, self.log())
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not listening in time; log tail:\n{self.log()[-3000:]}")
            text = self.log()
            if (started := STARTED.search(text)) and (running := RUNNING.search(text)):
                self.pid = int(started.group(1))
                self.url = f"http://127.0.0.1:{running.group(1)}"
            time.sleep(POLL_S)
        self.client = loopback_client(self.url)
        while self.client.get("/readyz").status_code != 200:  # listening means warmed up; ready is the contract
            if time.monotonic() > deadline:
                raise TimeoutError(f"/readyz never said ready: {self.client.get('/readyz').text}")
            time.sleep(POLL_S)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def restore(
        self, data: bytes, filename: str = "photo.png", content_type: str = "image/png", **kwargs
    ) -> httpx.Response:
        """POST /restore with one file; keyword arguments are form fields (`headers=` is passed on)."""
        headers = kwargs.pop("headers", None)
        return self.client.post(
            "/restore", files={"image": (filename, data, content_type)}, data=kwargs, headers=headers
        )

    def terminate(self) -> float:
        """SIGTERM the server itself; returns the monotonic time it was sent."""
        os.kill(self.pid, signal.SIGTERM)
        return time.monotonic()

    def wait(self, timeout_s: float) -> int:
        """Exit status (negative: killed by that signal); kills the process on timeout and re-raises."""
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the server, and its wrapper: a killed strace would leave its tracee running."""
        if self.process is None or self.process.poll() is not None:
            return
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.process.kill()
        self.process.wait(10)

    def stop(self, timeout_s: float = 30.0) -> int:
        """Graceful stop (SIGTERM), then reap; returns the exit status."""
        if self.client is not None:
            self.client.close()
        if self.process.poll() is None:
            self.terminate()
        return self.wait(timeout_s)

    def close(self) -> None:
        """Stop the server if it still runs (killed if it does not stop in time) and release the client."""
        if self.process is not None and self.process.poll() is None:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                pass  # wait() killed it
        elif self.client is not None:
            self.client.close()

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
