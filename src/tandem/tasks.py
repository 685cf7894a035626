"""Every task, imported in one place so that the registry is complete (API, executors)."""

from tandem.jobs import builtin
from tandem.jobs.registry import TaskRegistry, registry

__all__ = ["builtin", "registry", "task_registry"]


def task_registry() -> TaskRegistry:
    return registry
