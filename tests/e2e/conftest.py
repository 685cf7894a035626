"""A real `tandem serve` process on a free port of 127.0.0.1."""

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    base_url: str
    workdir: Path

    def output(self) -> str:
        self.stop()
        return self.process.stdout.read() if self.process.stdout else ""

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def tandem_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tandem", *args]


def clean_environment(**overrides: str) -> dict[str, str]:
    """The parent's environment without TANDEM_ settings, so the server runs on defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env.update(overrides)
    return env


# Budgets on Redis outlive a test: every run of the suite within the hour (a developer's,
# then CI's) registers from 127.0.0.1 against the same "10/hour". Tests not about that limit
# lift it.
UNLIMITED_REGISTRATION = {
    "TANDEM_RATE_LIMIT_REGISTER": "100000/hour",
    "TANDEM_RATE_LIMIT_REGISTER_GLOBAL": "100000/hour",
}


@pytest.fixture
def start_server(
    tmp_path: Path, free_tcp_port_factory: Callable[[], int]
) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(*extra_args: str, env: dict[str, str] | None = None) -> ServerProcess:
        port = free_tcp_port_factory()
        process = subprocess.Popen(
            tandem_command("serve", "--host", "127.0.0.1", "--port", str(port), *extra_args),
            cwd=tmp_path,
            env=env or clean_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        server = ServerProcess(process, f"http://127.0.0.1:{port}", tmp_path)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


async def wait_until_serving(
    server: ServerProcess, wait_until: Callable[..., object], timeout: float = 90.0
) -> None:
    """Up to 90 s: importing the app takes ~6 s, several times that under subprocess coverage
    on a busy 2-core machine (the full suite with `-n 2` next to the browser tests)."""

    async def answers() -> bool:
        if server.process.poll() is not None:
            raise AssertionError(f"tandem serve exited early:\n{server.output()}")
        try:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=1.0) as client:
                return (await client.get("/health")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(answers, timeout=timeout)  # type: ignore[operator]


# A test's outcome, for fixtures that keep evidence of a failure (browser screenshots).
CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    if call.when == "call":
        item.stash[CALL_FAILED] = bool(getattr(report, "failed", False))
    return report
