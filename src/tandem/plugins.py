"""Where agents, tasks and review kinds come from: one path for all three.

Each is an entry-point group (`tandem.agents`, `tandem.tasks`, `tandem.review_kinds`) and
each provider an entry point, `name = module:attribute`, naming one object: an `AgentSpec`,
a `TaskDefinition` (what `tandem.jobs.registry.task` makes of a function) or a `ReviewKind`.
The built-ins are listed below as entry points of those groups, followed by the entry points
installed packages declare (`[project.entry-points."tandem.agents"]` in their pyproject):
the same objects, loaded by the same code. A registry loads its group the first time it is
used, so a provider may import the module that defines the registry; `tandem serve` and
`tandem worker` load every group at start-up (`load_all`), so a plugin that fails to import
or register stops them with a `PluginError` naming it and the cause.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

AGENTS = "tandem.agents"
TASKS = "tandem.tasks"
REVIEW_KINDS = "tandem.review_kinds"
GROUPS = (AGENTS, TASKS, REVIEW_KINDS)

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
        ("webhook.deliver", "tandem.webhooks.tasks:deliver"),
        ("review.digest", "tandem.notifications.review_digest:send_digest"),
    ),
    REVIEW_KINDS: (
        ("content", "tandem.content.service:content_review"),
        ("swap", "tandem.scheduling.swaps:swap_review"),
    ),
}


def providers(group: str) -> list[EntryPoint]:
    """The group's providers: the built-ins, then those of installed packages by name."""
    installed = sorted(entry_points(group=group), key=lambda p: (package_of(p), p.name))
    return [EntryPoint(name, value, group) for name, value in BUILT_IN[group]] + installed


def package_of(provider: EntryPoint) -> str:
    """The distribution that declares the provider (`tandem` for the built-ins)."""
    dist = provider.dist
    if dist is None:
        from tandem import __version__

        return f"tandem {__version__}"
    return f"{dist.name} {dist.version}"


class PluginError(Exception):
    """A provider that could not be imported or registered."""

    def __init__(self, provider: EntryPoint, cause: BaseException) -> None:
        self.provider = provider
        super().__init__(
            f"Plugin {provider.name!r} ({provider.group} = {provider.value}, package "
            f"{package_of(provider)}) failed to load: {type(cause).__name__}: {cause}"
        )


@dataclass(frozen=True)
class Loaded:
    """One object a registry holds, and where it came from."""

    group: str
    name: str
    value: str  # module:attribute, or the object's repr when registered in code
    package: str


T = TypeVar("T")


class Registry(Generic[T]):
    """Objects by name: those of an entry-point group (loaded on first use), or the ones
    given (a test's own registry)."""

    what = "Item"  # how an error names one
    key_attribute = "name"  # the attribute objects are known by
    item_type: type | None = None  # what every object must be

    def __init__(self, items: Iterable[T] = (), *, group: str | None = None) -> None:
        self.group = group
        self._pending = group is not None
        self._failure: PluginError | None = None
        self._items: dict[str, T] = {}
        self._origins: dict[str, Loaded] = {}
        for item in items:
            self.register(item)

    def key(self, item: T) -> str:
        return str(getattr(item, self.key_attribute))

    def unknown(self, name: str) -> Exception:
        return LookupError(f"No {self.what.lower()} {name!r} is registered")

    def _loaded(self) -> dict[str, T]:
        if self._failure is not None:  # a broken plugin breaks every use, not only the first
            raise self._failure
        if self._pending:
            self._pending = False  # before loading: a provider may register while imported
            for provider in providers(str(self.group)):
                try:
                    item = self._checked(provider.load())
                    if self.key(item) != provider.name:
                        raise ValueError(
                            f"the entry point is named {provider.name!r} but the "
                            f"{self.what.lower()} it names is {self.key(item)!r}"
                        )
                    self._add(item, provider.group, provider.value, package_of(provider))
                except Exception as exc:
                    self._failure = PluginError(provider, exc)
                    raise self._failure from exc
        return self._items

    def _checked(self, item: T) -> T:
        if self.item_type is not None and not isinstance(item, self.item_type):
            raise TypeError(
                f"expected {self.item_type.__name__}, got {type(item).__name__} {item!r}"
            )
        return item

    def _add(self, item: T, group: str, value: str, package: str) -> T:
        name = self.key(self._checked(item))
        if name in self._items:
            raise ValueError(
                f"{self.what} {name!r} is already registered (by {self._origins[name].package})"
            )
        self._items[name] = item
        self._origins[name] = Loaded(group, name, value, package)
        return item

    def register(self, item: T) -> T:
        """Adds an object in code (a test's own kind, say)."""
        self._loaded()
        return self._add(item, self.group or "", repr(item), "registered in code")

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

    def origins(self) -> list[Loaded]:
        """Where each object came from, in the order registered."""
        self._loaded()
        return list(self._origins.values())

    def __iter__(self) -> Iterator[T]:
        return iter(self.all())


def registries() -> dict[str, Registry[Any]]:
    """The process's registries, by group."""
    # Imported here: those modules import this one for `Registry`.
    from tandem.agents.registry import registry as agents
    from tandem.jobs.registry import registry as tasks
    from tandem.review.kinds import kinds

    return {AGENTS: agents, TASKS: tasks, REVIEW_KINDS: kinds}


def load_all() -> list[Loaded]:
    """Loads every group now (raises `PluginError` for the first provider that fails) and
    says what is loaded, from which package."""
    return [loaded for registry in registries().values() for loaded in registry.origins()]
