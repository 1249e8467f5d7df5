"""Parts that plug in: the base class of every part and the registry of each kind.

The project grows by parts (../shared/DESIGN.md, "Parts that plug in"): methods,
invariance sets, probes and data sources. A part is a frozen dataclass whose fields are
its typed config section (with defaults) and whose methods implement its kind's small
protocol; `problems` holds the part's own checks. Registering it under a name is one
decorator::

    @METHODS.register
    @dataclass(frozen=True)
    class MoCoV2(Method):
        name: ClassVar[str] = "mocov2"
        queue_size: int = 256
        ...

The training loop, the evaluation stage and the orchestrator only ever loop over the
parts a trial config names. This module sits in `datasets/`, the lowest room, so that
every room can import it (imports point down only).

Parts are found, not listed (:func:`import_parts`): the first read of a registry imports
every module of its package (a new file there is registered without editing any
``__init__``) and every module that an installed distribution declares under the entry
point group :data:`PARTS_ENTRY_POINT_GROUP`, so a user's own package adds parts by
declaring, in its ``pyproject.toml``::

    [project.entry-points."demystify_ssl.parts"]
    my_parts = "my_package.parts"     # a module, or a package: each of its modules is imported
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import pkgutil
from typing import Any, ClassVar, Generic, Iterable, TypeVar

# The entry point group of parts from installed distributions (the project is `demystify-ssl`).
PARTS_ENTRY_POINT_GROUP = "demystify_ssl.parts"


class ConfigError(ValueError):
    """A configuration that cannot run; raised before any cluster work starts."""


@dataclasses.dataclass(frozen=True)
class ReportColumn:
    """A column a part adds to the report tables (orchestrator.tables): the metric keys it
    shows in one cell (an invariance set's top10 / top25), its head in Markdown and on a
    terminal, its decimals, and whether it is a percentage (charted from 0 to 100)."""

    keys: tuple[str, ...]
    label: str
    short: str = ""
    digits: int = 2
    percent: bool = True

    @property
    def name(self) -> str:
        """`ris/viewpoint/top10` -> `viewpoint`, `probe/linear_top1` -> `linear_top1` (chart files)."""
        return self.keys[0].split("/")[1] if "/" in self.keys[0] else self.keys[0]


@dataclasses.dataclass(frozen=True)
class Part:
    """A registered, typed, validated piece of a trial. Its fields are its config section."""

    name: ClassVar[str] = ""
    # The metrics it reports that the tables show as columns (the probes', the tracks' ...).
    columns: ClassVar[tuple[ReportColumn, ...]] = ()

    @classmethod
    def report_columns(cls) -> tuple[ReportColumn, ...]:
        return cls.columns

    def problems(self, trial: Any) -> list[str]:
        """Everything wrong with this part in `trial`, as readable sentences (empty: valid).

        Runs on the driver before any Ray work. Sentences name the part's keys in their
        dotted form (see `orchestrator.config`), e.g. ``method.queue_size=100 ...``.
        """
        return []

    def settings(self) -> dict[str, Any]:
        """The part's config section: field name -> value."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


P = TypeVar("P", bound=type)


def import_parts(modules: Iterable[str]) -> None:
    """Import `modules` by name, and with each package every module in it, so that their
    part registrations run: the one way parts are found (a registry's package, the
    installed entry points, the modules a trial's parts come from in a Ray worker).

    Order is fixed (names sorted, a package's modules sorted) so that registration, and
    any clash of names, is the same on every run and every process; a module already
    imported is not imported again.
    """
    for name in sorted(set(modules)):
        module = importlib.import_module(name)
        for info in sorted(pkgutil.iter_modules(getattr(module, "__path__", [])), key=lambda i: i.name):
            importlib.import_module(f"{name}.{info.name}")


def installed_part_modules() -> list[str]:
    """The modules installed distributions declare under :data:`PARTS_ENTRY_POINT_GROUP`."""
    return sorted({point.module for point in importlib.metadata.entry_points(group=PARTS_ENTRY_POINT_GROUP)})


class Registry(Generic[P]):
    """Names -> part classes of one kind (methods, invariance sets, probes, data sources).

    `package` holds the kind's built-in parts, one module each; the first read (`get`,
    `names`, `in`) runs :meth:`discover`.
    """

    def __init__(self, kind: str, base: type, package: str = ""):
        self.kind = kind
        self.base = base
        self.package = package
        self._parts: dict[str, type] = {}
        self._discovered = False

    def discover(self) -> None:
        """Register the parts of this kind's package and of the installed entry points."""
        self._discovered = True  # first: a read during the imports sees what is there so far
        try:
            import_parts([self.package, *installed_part_modules()] if self.package else installed_part_modules())
        except BaseException:
            self._discovered = False  # the next read tries again, and fails as loudly
            raise

    def _registered(self) -> dict[str, type]:
        if not self._discovered:
            self.discover()
        return self._parts

    def register(self, part: P) -> P:
        """Class decorator: add `part` under `part.name`. A name is taken once."""
        if not (isinstance(part, type) and issubclass(part, self.base)):
            raise TypeError(f"a {self.kind} must subclass {self.base.__name__}, got {part!r}")
        if "__dataclass_fields__" not in vars(part) or not part.__dataclass_params__.frozen:
            # (A subclass of a dataclass inherits the marker: it must be decorated itself.)
            raise TypeError(f"{self.kind} {part.__name__} must be a frozen dataclass (@dataclass(frozen=True))")
        name = part.name
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"{self.kind} {part.__name__}: name {name!r} must be letters, digits, '_' or '-'")
        existing = self._parts.get(name)
        if existing is not None and existing.__qualname__ != part.__qualname__:
            raise ValueError(f"{self.kind} {name!r} is already registered by {existing.__module__}.{existing.__qualname__}")
        self._parts[name] = part
        return part

    def unregister(self, name: str) -> None:
        self._parts.pop(name, None)

    def get(self, name: str) -> P:
        parts = self._registered()
        try:
            return parts[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} {name!r}; registered: {', '.join(sorted(parts))}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._registered()))

    def __contains__(self, name: object) -> bool:
        return name in self._registered()
