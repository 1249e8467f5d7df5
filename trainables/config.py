"""The typed trial config: the run's own settings composed with the parts it names.

A trial is one :class:`TrialConfig`: the settings of the training run that every method
shares (architecture, image size, optimiser, workers, seed) and the parts it uses, each
a typed, validated section (``datasets.registry``):

- ``method``: one method (``trainables.methods``), e.g. MoCo v2;
- ``invariances``: the invariance sets scored with RIS (``datasets.invariance_sets``);
- ``probes``: the probes (``trainables.probes``);
- ``data``: one data source (``datasets.sources``) per data role those parts read.

It has three views, one spelling each (docs/internals.md):

- nested (``to_nested``/``from_nested``): plain dicts, Ray Tune's ``param_space``;
- flat dotted (``flat``/``override``, selections before settings): ``method.queue_size``, ``data.pretrain.classes``,
  ``invariances=viewpoint,illumination_color``: the command line's ``--set`` and the
  MLflow params, where a trial logs only the keys of the parts it uses;
- the typed object itself, which the Train workers receive.

Every rule has one owner: the run's rules are in :meth:`TrialConfig.problems`, each
part's in its own ``problems``; all of them run on the driver before any Ray work.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from datasets.invariance_sets import INVARIANCE_SETS, INVARIANCES, InvarianceSetPart
from datasets.registry import ConfigError, Part, Registry
from datasets.corruptions import NONE as NO_CORRUPTION
from datasets.corruptions import corruption_problems
from datasets.sources import DATA_SOURCES, DataRole, DataSource
from datasets.sources.base import IMAGE_FOLDER, SOURCE_KEY
from datasets.subsets import fraction_problem
from trainables.invariance import check_ris_options
from trainables.methods import METHODS, Method
from trainables.models import SCORED_LAYERS, arch_problem
from trainables.optim import optimizer_problem
from trainables.probes import PROBES, Probe

# Keys of the nested view naming a part (the section's own key in the flat view).
PART_NAME_KEY = "name"
# Fields that travel with the trial but are not logged as MLflow params.
NOT_A_PARAM = {"param": False}


def per_worker_batch(global_batch: int, workers: int) -> int:
    """The batch each of `workers` DDP ranks takes from a `global_batch`; it must split evenly."""
    if workers < 1 or global_batch % workers:
        raise ValueError(f"batch_size={global_batch} does not split evenly over num_workers={workers}")
    return global_batch // workers


def _default_method() -> Method:
    return METHODS.get("mocov2")()


def _default_invariances() -> tuple[InvarianceSetPart, ...]:
    return tuple(INVARIANCE_SETS.get(n)() for n in INVARIANCES)  # the paper's six


def _default_probes() -> tuple[Probe, ...]:
    return (PROBES.get("linear")(),)


@dataclass(frozen=True)
class TrialConfig:
    """One trial: the training run's settings and its parts (see the module docstring)."""

    arch: str = "resnet18"  # torchvision ResNet-family trunk
    image_size: int = 64  # crop output size (pretraining) and evaluation resize
    epochs: int = 2  # 0: no training; the seed's initial weights are evaluated (a random-init row)
    batch_size: int = 64  # global, split evenly over the workers
    optimizer: str = "sgd"  # sgd, lars or adamw (trainables.optim), over the method's parameter groups
    lr: float = 0.03  # for the global batch
    momentum: float = 0.9  # sgd and lars
    weight_decay: float = 1e-4
    cosine_schedule: bool = True  # cosine decay over `epochs`, else constant
    num_workers: int = 1  # Ray Train workers (DDP ranks)
    use_gpu: bool = False  # one GPU per worker
    cpus_per_worker: int = 1
    seed: int = 0  # everything random is seeded from it
    # Cole et al. 2022's nested, fixed pretraining subsets (datasets.subsets): the method's
    # training set keeps the first ceil(f x N) items of one permutation drawn from
    # `pretrain_subset_seed`, not from `seed`, so subsets are nested and the same for every seed.
    pretrain_fraction: float = 1.0
    pretrain_subset_seed: int = 0
    # Cole et al. 2022's pretraining-only corruptions (datasets.corruptions): the method reads
    # a corrupted copy of its image-folder roots; probes and invariance sets read clean ones.
    pretrain_corruption: str = "none"
    pretrain_corruption_seed: int = 0
    pretrain_jpeg_quality: int = 10
    pretrain_salt_pepper_rate: float = 0.05
    pretrain_blur_sigma: float = 1.0
    checkpoint_every: int = 1  # epochs between checkpoints (and the last one)
    eval_batch_size: int = 256  # frozen-feature extraction
    ris_max_objects: int = 32  # targets per invariance set scored (0 = all)
    # RIS's reading (trainables.invariance): the sign rule, the local firing rate (Eq. 2
    # or conditioned on the reference firing) and how samples weigh in it.
    ris_sign: str = "per_target"
    ris_local_rate: str = "eq2"
    ris_weighting: str = "sample"
    eval_layer: str = "pool"  # the scored layer (trainables.models.SCORED_LAYERS; pool = the paper's)
    method: Method = field(default_factory=_default_method)
    invariances: tuple[InvarianceSetPart, ...] = field(default_factory=_default_invariances)
    probes: tuple[Probe, ...] = field(default_factory=_default_probes)
    # role -> source; roles that no part reads are dropped, missing ones get their default.
    data: dict[str, DataSource] = field(default_factory=dict)
    # Not params: where generated data is cached ("" = $DSSL_CACHE_DIR or ~/.cache/demystify-ssl),
    # and the fault-tolerance tests' hook (raise once after checkpointing this epoch, in a
    # run that did not start from a checkpoint).
    data_cache: str = field(default="", metadata=NOT_A_PARAM)
    inject_failure_at_epoch: int = field(default=-1, metadata=NOT_A_PARAM)
    # The fault tests' other hook: rank 0's process SIGKILLs itself halfway through this
    # epoch (>= 1, so a checkpoint exists), once per Train run, in a run that did not start
    # from a checkpoint.
    inject_kill_mid_epoch: int = field(default=-1, metadata=NOT_A_PARAM)
    # Custom Ray resources each Train worker also asks for ("name=amount,..."), to pin the
    # workers to a node group of a heterogeneous cluster; placement only, not a param.
    worker_resources: str = field(default="", metadata=NOT_A_PARAM)
    # The evaluation task's memory request in GiB (0: estimated from the images it scores and
    # the feature width, trainables.evaluation.plan_evaluation); placement only, not a param.
    eval_memory_gb: float = field(default=0.0, metadata=NOT_A_PARAM)

    def __post_init__(self) -> None:
        data = {role: self.data.get(role) or DATA_SOURCES.get(need.default_source)()
                for role, need in self.roles().items()}
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "invariances", tuple(self.invariances))
        object.__setattr__(self, "probes", tuple(self.probes))

    # -- the parts -------------------------------------------------------------------------
    def consumers(self) -> list[tuple[str, Part]]:
        """Every part that reads data, with its section path (``method``, ``invariances.<name>``...)."""
        return ([("method", self.method)]
                + [(f"invariances.{p.name}", p) for p in self.invariances]
                + [(f"probes.{p.name}", p) for p in self.probes])

    def roles(self) -> dict[str, DataRole]:
        """The data roles the parts read (the first declaration of a role wins)."""
        roles: dict[str, DataRole] = {}
        for _, part in self.consumers():
            for role, need in part.roles.items():
                roles.setdefault(role, need)
        return roles

    def root(self, role: str):
        """The resolved root of `role` (a generated source is built on first use)."""
        return self.data[role].resolve(self)

    def data_figures(self) -> dict[str, float]:
        """Each role's source's figures (``DataSource.figures``) as ``data/<role>/<name>`` metrics."""
        return {f"data/{role}/{name}": value for role, source in self.data.items()
                for name, value in source.figures(self).items()}

    def root_of(self, part: Part):
        """The root of the one data role `part` reads."""
        (role,) = part.roles
        return self.root(role)

    def custom_worker_resources(self) -> dict[str, float]:
        """`worker_resources` as a dict: "fake_gpu=1,ssd=0.5" -> {"fake_gpu": 1.0, "ssd": 0.5}."""
        out: dict[str, float] = {}
        for item in filter(None, (i.strip() for i in self.worker_resources.split(","))):
            name, sep, amount = item.partition("=")
            try:
                value = float(amount) if sep and name.strip() else -1.0
            except ValueError:
                value = -1.0
            if value <= 0 or name.strip() in ("CPU", "GPU", "memory"):
                raise ValueError(f"worker_resources={self.worker_resources!r}: expected name=amount pairs "
                                 f"(amount > 0) of custom resources, got {item!r}")
            out[name.strip()] = value
        return out

    def part_modules(self) -> set[str]:
        """The modules defining this trial's parts: importing them registers the parts."""
        parts = [part for _, part in self.consumers()] + list(self.data.values())
        return {type(part).__module__ for part in parts}

    # -- rules -----------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Everything wrong with this trial, as readable sentences naming dotted keys (empty: valid)."""
        out: list[str] = []
        for name in ("image_size", "batch_size", "num_workers", "cpus_per_worker",
                     "eval_batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                out.append(f"{name}={getattr(self, name)} must be at least 1")
        if self.epochs < 0:
            out.append(f"epochs={self.epochs} must be at least 0 (0: no training, the initial weights are evaluated)")
        if self.image_size >= 1 and self.image_size < 32:
            out.append(f"image_size={self.image_size} is too small for a ResNet (at least 32)")
        if (problem := arch_problem(self.arch)) is not None:
            out.append(problem)
        if self.batch_size >= 1 and self.num_workers >= 1:
            try:
                per_worker_batch(self.batch_size, self.num_workers)
            except ValueError as err:
                out.append(str(err))
        try:
            self.custom_worker_resources()
        except ValueError as err:
            out.append(str(err))
        if self.eval_memory_gb < 0:
            out.append(f"eval_memory_gb={self.eval_memory_gb} must be at least 0 (0: estimated from the "
                       f"evaluation's images and feature width)")
        if self.inject_kill_mid_epoch == 0:
            out.append("inject_kill_mid_epoch=0 would kill every restart (no checkpoint yet): use >= 1")
        if self.lr <= 0:
            out.append(f"lr={self.lr} must be positive")
        if (problem := optimizer_problem(self.optimizer)) is not None:
            out.append(problem)
        if self.momentum < 0 or self.weight_decay < 0:
            out.append(f"momentum={self.momentum} and weight_decay={self.weight_decay} must be at least 0")
        if (problem := fraction_problem("pretrain_fraction", self.pretrain_fraction)) is not None:
            out.append(problem)
        if self.pretrain_subset_seed < 0:
            out.append(f"pretrain_subset_seed={self.pretrain_subset_seed} must be at least 0")
        out += corruption_problems(self.pretrain_corruption, self.pretrain_jpeg_quality,
                                   self.pretrain_salt_pepper_rate, self.pretrain_blur_sigma)
        if self.pretrain_corruption != NO_CORRUPTION and not any(
                need.layout == IMAGE_FOLDER for need in self.method.roles.values()):
            out.append(f"pretrain_corruption={self.pretrain_corruption} corrupts image-folder roots; "
                       f"method={self.method.name} reads none")
        if self.ris_max_objects < 0:
            out.append(f"ris_max_objects={self.ris_max_objects} must be >= 0 (0 = all)")
        out += [f"ris_{p}" for p in check_ris_options(self.ris_sign, self.ris_local_rate, self.ris_weighting)]
        if self.eval_layer not in SCORED_LAYERS:
            out.append(f"eval_layer={self.eval_layer!r} is not one of {', '.join(SCORED_LAYERS)}")
        for kind, parts in (("invariances", self.invariances), ("probes", self.probes)):
            names = [p.name for p in parts]
            if len(set(names)) < len(names):
                out.append(f"{kind}={','.join(names)} names a part twice")
            for part in parts:
                if len(part.roles) != 1:
                    out.append(f"{kind}.{part.name} must read exactly one data role, declares {sorted(part.roles)}")
        for path, part in self.consumers():
            out += [f"{path}.{p}" for p in part.problems(self)]
        out += self._data_problems()
        return out

    def _data_problems(self) -> list[str]:
        out: list[str] = []
        needs: dict[str, set[str]] = {}
        for path, part in self.consumers():
            for role, need in part.roles.items():
                first = self.roles()[role]
                if need.layout != first.layout:
                    out.append(f"{path} reads data.{role} as {need.layout}, another part as {first.layout}")
                needs.setdefault(role, set()).update(need.needs)
        for role, source in self.data.items():
            layout = self.roles()[role].layout
            if source.layout != layout:
                fits = [n for n in DATA_SOURCES.names() if DATA_SOURCES.get(n).layout == layout]
                out.append(f"data.{role}={source.name} yields the {source.layout} layout, but data.{role} "
                           f"is read as {layout} (sources: {', '.join(fits)})")
                continue
            out += [f"data.{role}.{p}" for p in source.problems(self)]
            out += [f"data.{role}: {p}" for p in source.check_root(tuple(sorted(needs.get(role, ()))))]
        return out

    # -- views -----------------------------------------------------------------------------
    def to_nested(self) -> dict[str, Any]:
        """Plain nested dicts (Ray Tune's ``param_space``); :meth:`from_nested` inverts it."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in _run_fields()}
        out["method"] = {PART_NAME_KEY: self.method.name, **self.method.settings()}
        out["invariances"] = {p.name: p.settings() for p in self.invariances}
        out["probes"] = {p.name: p.settings() for p in self.probes}
        out["data"] = {role: {SOURCE_KEY: s.name, **s.settings()} for role, s in self.data.items()}
        return out

    @classmethod
    def from_nested(cls, values: dict[str, Any]) -> "TrialConfig":
        """The typed trial of a nested dict; strings are parsed into the fields' types.

        Raises ConfigError naming the dotted key of anything unknown or mistyped.
        """
        values = dict(values)
        kwargs: dict[str, Any] = {}
        run = {f.name: f for f in _run_fields()}
        sections = {"method", "invariances", "probes", "data"}
        unknown = sorted(set(values) - set(run) - sections)
        if unknown:
            raise ConfigError(f"unknown trial config key {unknown[0]!r}; known: {', '.join(sorted(set(run) | sections))}")
        hints = typing.get_type_hints(cls)
        for name in run:
            if name in values:
                kwargs[name] = _coerce(name, values[name], hints[name])
        if "method" in values:
            section = dict(_section("method", values["method"]))
            kwargs["method"] = _build(METHODS, "method", section.pop(PART_NAME_KEY, _default_method().name), section)
        for kind, registry in (("invariances", INVARIANCE_SETS), ("probes", PROBES)):
            if kind in values:
                kwargs[kind] = tuple(_build(registry, f"{kind}.{name}", name, dict(_section(f"{kind}.{name}", s or {})))
                                     for name, s in _section(kind, values[kind]).items())
        if "data" in values:
            data = {}
            for role, section in _section("data", values["data"]).items():
                section = dict(_section(f"data.{role}", section))
                if SOURCE_KEY not in section:
                    raise ConfigError(f"data.{role} names no source (set data.{role}=<source>)")
                data[role] = _build(DATA_SOURCES, f"data.{role}", section.pop(SOURCE_KEY), section)
            kwargs["data"] = data
        return cls(**kwargs)

    def flat(self, params_only: bool = True) -> dict[str, Any]:
        """The dotted view: what ``--set`` takes and, with `params_only`, the MLflow params."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in _run_fields()
                               if not params_only or f.metadata.get("param", True)}
        out["method"] = self.method.name
        out.update({f"method.{k}": v for k, v in self.method.settings().items()})
        for kind, parts in (("invariances", self.invariances), ("probes", self.probes)):
            out[kind] = ",".join(p.name for p in parts)
            for part in parts:
                out.update({f"{kind}.{part.name}.{k}": v for k, v in part.settings().items()})
        for role, source in self.data.items():
            out[f"data.{role}"] = source.name
            out.update({f"data.{role}.{k}": v for k, v in source.settings().items()})
        return out

    def override(self, changes: dict[str, Any]) -> "TrialConfig":
        """This trial with dotted `changes` applied (values typed, or strings to parse).

        They apply in a fixed order, whatever order the user gave them in: the part
        selections (``method=<name>``, ``invariances=a,b``, ``probes=a``), then the data
        sources (``data.<role>=<source>``, for the roles the selected parts read), then
        every setting. So ``data.video=video`` may come before ``method=fti``. A selection
        switches the part, with its defaults; ``invariances``/``probes`` keep the settings
        of the parts they keep.
        """
        nested = self.to_nested()
        ordered = sorted(changes.items(), key=lambda item: _override_stage(item[0]))
        for key, value in ordered:
            _set_dotted(nested, key, value)
            if key in PART_SELECTIONS:
                # The selection changed: the roles the parts read (and their sources) follow.
                nested = TrialConfig.from_nested(nested).to_nested()
        return TrialConfig.from_nested(nested)


# The keys selecting parts, applied first by `TrialConfig.override`.
PART_SELECTIONS = ("method", "invariances", "probes")


def _override_stage(key: str) -> int:
    """Where `key` goes in `override`'s order: part selections, data sources, settings."""
    if key in PART_SELECTIONS:
        return 0
    head, _, rest = key.partition(".")
    if head == "data":
        return 1 if "." not in rest else 2
    return 3


def readers_of(role: str) -> list[str]:
    """The selections whose part reads data `role`, as ``--set`` values: ``method=fti``,
    ``invariances=viewpoint``... (every registered part, in registry order)."""
    return [f"{kind}={name}" for kind, registry in (("method", METHODS), ("invariances", INVARIANCE_SETS),
                                                    ("probes", PROBES))
            for name in registry.names() if role in registry.get(name).roles]


def _unread_role(key: str, role: str, nested: dict[str, Any]) -> ConfigError:
    """The error for a data role no selected part reads: which selections would read it."""
    readers = readers_of(role)
    read = f"roles read: {', '.join(nested['data']) or 'none'}"
    if not readers:
        return ConfigError(f"{key}: no part of this trial reads data.{role}, nor does any registered part ({read})")
    kind, _, name = readers[0].partition("=")
    current = list(nested[kind]) if kind != "method" else []
    hint = f"{kind}={','.join([*current, name])}"
    return ConfigError(f"{key}: no part of this trial reads data.{role}; it is read by {', '.join(readers)} "
                       f"({read}) - add --set {hint}")


def _run_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(TrialConfig) if f.name not in ("method", "invariances", "probes", "data")]


def _section(path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path} must be a section (a mapping of keys to values), got {value!r}")
    return value


def _build(registry: Registry, path: str, name: str, settings: dict[str, Any]) -> Part:
    try:
        cls = registry.get(str(name))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise ConfigError(f"unknown trial config key '{path}.{unknown[0]}'; {registry.kind} {name!r} "
                          f"has: {', '.join(sorted(fields)) or 'no settings'}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _coerce(f"{path}.{k}", v, hints[k]) for k, v in settings.items()})


def _coerce(key: str, value: Any, kind: Any) -> Any:
    """`value` as a `kind` (bool, int, float, str); strings from the command line are parsed."""
    try:
        if kind is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return lowered in ("true", "1", "yes")
            if isinstance(value, (bool, int)) and value in (0, 1):
                return bool(value)
            raise ValueError(value)
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if kind is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r}: expected {kind.__name__}") from None
    return value


def _set_dotted(nested: dict[str, Any], key: str, value: Any) -> None:
    """Apply one dotted change to the nested view (see :meth:`TrialConfig.override`)."""
    head, _, rest = key.partition(".")
    if head == "method":
        if not rest:
            if value != nested["method"][PART_NAME_KEY]:
                nested["method"] = {PART_NAME_KEY: value}
        else:
            nested["method"][rest] = value
    elif head in ("invariances", "probes"):
        if not rest:
            names = [n.strip() for n in str(value).split(",") if n.strip()]
            nested[head] = {n: nested[head].get(n, {}) for n in names}
        else:
            name, _, setting = rest.partition(".")
            if name not in nested[head]:
                raise ConfigError(f"{key}: {name!r} is not in {head} ({','.join(nested[head]) or 'none'}); select it first")
            if not setting:
                raise ConfigError(f"{key}: expected {head}.{name}.<setting>")
            nested[head][name][setting] = value
    elif head == "data":
        role, _, setting = rest.partition(".")
        if role not in nested["data"]:
            raise _unread_role(key, role, nested)
        if not setting:
            if value != nested["data"][role][SOURCE_KEY]:
                nested["data"][role] = {SOURCE_KEY: value}
        else:
            nested["data"][role][setting] = value
    elif rest or head not in {f.name for f in _run_fields()}:
        raise ConfigError(f"unknown trial config key {key!r}; run keys: "
                          f"{', '.join(f.name for f in _run_fields())}, and method[.*], "
                          "invariances[.*], probes[.*], data.<role>[.*]")
    else:
        nested[head] = value

