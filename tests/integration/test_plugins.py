"""Plugins: installed packages' entry points load through the registries' one path, and a
broken one stops `tandem serve` and `tandem worker` with its name and the cause.

Each test installs a real tiny distribution (a `.dist-info` directory with entry_points.txt)
in tmp_path and runs `python -m tandem` in a fresh process with it on PYTHONPATH."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tandem.agents.registry import AgentRegistry
from tandem.jobs.registry import TaskRegistry
from tandem.plugins import AGENTS, TASKS, PluginError
from tests.plugin_support import make_distribution

HELLO_TASK = """
from tandem.jobs.registry import task

@task("hello.say", description="Says hello")
async def say(context, payload):
    return {"hello": payload.get("name", "world")}
"""


def tandem(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "TANDEM_DATABASE_URL": f"sqlite+aiosqlite:///{root / 'plugins.db'}",
    }
    return subprocess.run(
        [sys.executable, "-m", "tandem", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


BROKEN = [
    pytest.param(
        {AGENTS: {"triage": "triage_agent:spec"}},
        {"triage_agent": "raise RuntimeError('TRIAGE_MODEL is not set')\n"},
        "RuntimeError: TRIAGE_MODEL is not set",
        id="module-raises-on-import",
    ),
    pytest.param(
        {AGENTS: {"triage": "triage_missing:spec"}},
        {},
        "ModuleNotFoundError: No module named 'triage_missing'",
        id="module-missing",
    ),
    pytest.param(
        {AGENTS: {"triage": "triage_agent:spec"}},
        {"triage_agent": "spec = 'not an agent'\n"},
        "TypeError: expected AgentSpec, got str 'not an agent'",
        id="not-an-agent",
    ),
    pytest.param(
        {TASKS: {"echo": "echo_again:echo"}},
        {"echo_again": "from tandem.jobs.builtin import echo\n"},
        "Task 'echo' is already registered (by tandem",
        id="name-taken-by-a-built-in",
    ),
    pytest.param(
        {TASKS: {"hello": "hello_task:say"}},
        {"hello_task": HELLO_TASK},
        "the entry point is named 'hello' but the task it names is 'hello.say'",
        id="entry-point-name-differs",
    ),
]


@pytest.mark.parametrize(("entry_points", "modules", "cause"), BROKEN)
def test_a_broken_plugin_stops_serve_naming_the_plugin_and_the_cause(
    tmp_path: Path, entry_points: dict[str, dict[str, str]], modules: dict[str, str], cause: str
) -> None:
    make_distribution(tmp_path, "acme-triage", entry_points, modules)
    result = tandem(tmp_path, "serve", "--port", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    ((group, points),) = entry_points.items()
    ((name, value),) = points.items()
    assert f"Error: Plugin {name!r} ({group} = {value}, package acme-triage 0.1)" in result.stderr
    assert cause in result.stderr
    assert not (tmp_path / "plugins.db").exists()  # stopped before touching the database


def test_a_broken_plugin_stops_the_worker(tmp_path: Path) -> None:
    make_distribution(
        tmp_path,
        "acme-triage",
        {TASKS: {"triage.batch": "triage_tasks:batch"}},
        {"triage_tasks": "import triage_sdk_not_installed\n"},
    )
    result = tandem(tmp_path, "worker")
    assert result.returncode == 1
    assert "Error: Plugin 'triage.batch' (tandem.tasks = triage_tasks:batch, package " in (
        result.stderr
    )
    assert "No module named 'triage_sdk_not_installed'" in result.stderr


def test_tandem_plugins_lists_built_ins_and_installed_plugins_with_their_package(
    tmp_path: Path,
) -> None:
    make_distribution(
        tmp_path, "acme-hello", {TASKS: {"hello.say": "hello_task:say"}}, {"hello_task": HELLO_TASK}
    )
    result = tandem(tmp_path, "plugins")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["tandem.tasks", "hello.say", "acme-hello", "0.1", "hello_task:say"] in rows
    assert rows[0][:3] == ["tandem.agents", "summarizer", "tandem"]
    assert {tuple(row[:2]) for row in rows} >= {
        ("tandem.review_kinds", "content"),
        ("tandem.review_kinds", "swap"),
        ("tandem.tasks", "schedule.generate"),
    }


def test_an_installed_task_joins_the_registry_after_the_built_ins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_distribution(
        tmp_path, "acme-hello", {TASKS: {"hello.say": "hello_task:say"}}, {"hello_task": HELLO_TASK}
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    tasks = TaskRegistry(group=TASKS)
    assert tasks.get("hello.say").description == "Says hello"
    origins = {loaded.name: loaded.package for loaded in tasks.origins()}
    assert origins["hello.say"] == "acme-hello 0.1"
    assert origins["echo"].startswith("tandem ")


def test_a_registry_keeps_failing_after_a_broken_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_distribution(
        tmp_path, "acme-triage", {AGENTS: {"triage": "triage_agent:spec"}}, {"triage_agent": "1/0"}
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    agents = AgentRegistry(group=AGENTS)
    for _ in range(2):  # not half-loaded on the second use
        with pytest.raises(PluginError, match=r"'triage'.*ZeroDivisionError"):
            agents.get("summarizer")
