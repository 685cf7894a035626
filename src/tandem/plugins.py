"""Where agents, tasks and review kinds come from: one path for all three.

Each is an entry-point group (`tandem.agents`, `tandem.tasks`, `tandem.review_kinds`) and
each provider an entry point, `name = module:attribute`, naming one object: an `AgentSpec`,
a `TaskDefinition` (what `tandem.jobs.registry.task` makes of a function) or a `ReviewKind`.
The built-ins are listed below as entry points of those groups; a registry loads its group
the first time it is used, so a provider may import the module that defines the registry.
Installed plugins will join by adding `importlib.metadata.entry_points(group=...)` to
`providers`: the same objects, loaded the same way.
"""

from collections.abc import Iterable, Iterator
from importlib.metadata import EntryPoint
from typing import Any, Generic, TypeVar

AGENTS = "tandem.agents"
TASKS = "tandem.tasks"
REVIEW_KINDS = "tandem.review_kinds"

BUILT_IN: dict[str, tuple[tuple[str, str], ...]] = {
    AGENTS: (
        ("summarizer", "tandem.agents.summarizer:spec"),
        ("classifier", "tandem.agents.classifier:spec"),
        ("content-writer", "tandem.agents.content_writer:spec"),
    ),
    TASKS: (
        ("echo", "tandem.jobs.builtin:echo"),
        ("agent.run", "tandem.agents.runs:execute_run"),
        ("content.generate", "tandem.content.generation:generate"),
        ("schedule.generate", "tandem.scheduling.tasks:generate_schedule"),
    ),
    REVIEW_KINDS: (
        ("content", "tandem.content.service:content_review"),
        ("swap", "tandem.scheduling.swaps:swap_review"),
    ),
}


def providers(group: str) -> list[EntryPoint]:
    return [EntryPoint(name, value, group) for name, value in BUILT_IN[group]]


def load(group: str) -> list[Any]:
    """The objects the group's providers name, in order."""
    return [provider.load() for provider in providers(group)]


T = TypeVar("T")


class Registry(Generic[T]):
    """Objects by name: those of an entry-point group (loaded on first use), or the ones
    given (a test's own registry)."""

    what = "Item"  # how an error names one
    key_attribute = "name"  # the attribute objects are known by

    def __init__(self, items: Iterable[T] = (), *, group: str | None = None) -> None:
        self._group = group
        self._items: dict[str, T] = {}
        for item in items:
            self.register(item)

    def key(self, item: T) -> str:
        return str(getattr(item, self.key_attribute))

    def unknown(self, name: str) -> Exception:
        return LookupError(f"No {self.what.lower()} {name!r} is registered")

    def _loaded(self) -> dict[str, T]:
        if self._group is not None:
            group, self._group = self._group, None
            for item in load(group):
                self.register(item)
        return self._items

    def register(self, item: T) -> T:
        items, name = self._loaded(), self.key(item)
        if name in items:
            raise ValueError(f"{self.what} {name!r} is already registered")
        items[name] = item
        return item

    def get(self, name: str) -> T:
        try:
            return self._loaded()[name]
        except KeyError:
            raise self.unknown(name) from None

    def all(self) -> list[T]:
        """Every object, in the order registered."""
        return list(self._loaded().values())

    def names(self) -> list[str]:
        return sorted(self._loaded())

    def __iter__(self) -> Iterator[T]:
        return iter(self.all())
