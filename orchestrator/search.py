"""Search spaces: a sweep's knobs in Ray Tune's nested ``param_space``, checked on the driver.

A sweep names its space as a nested dict shaped like ``TrialConfig.to_nested()``, with
``tune.grid_search`` anywhere; it is laid over the base trial. A grid at a section
couples values: each option is a partial section, completed from the base, so a list
of ``(min, max)`` crop pairs or a knob that exists for one method alone is one grid::

    {"method": {"crop_scale_min": tune.grid_search([0.08, 0.2]), "crop_scale_max": 1.0}}
    {"method": tune.grid_search([{"crop_scale_min": 0.08, "crop_scale_max": 0.5},
                                 {"crop_scale_min": 0.2, "crop_scale_max": 1.0}])}
    {"method": tune.grid_search([{"name": "mocov2", "queue_size": 128}, {"name": "other"}])}

An option that names another part (``name``, or ``source`` under ``data.<role>``) starts
from that part's defaults; an option at ``invariances`` or ``probes`` is the selection.
Only grids: every trial is expanded here, exactly as Tune will, and checked before any
Ray work; random search domains are refused.
"""
from __future__ import annotations

import copy
import itertools
from typing import Any

from ray.tune.search.sample import Domain

from datasets.registry import ConfigError
from trainables.config import PART_NAME_KEY, PART_SELECTIONS, SOURCE_KEY, TrialConfig

GRID = "grid_search"
SELECTIONS = ("invariances", "probes")


def is_grid(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {GRID}


def param_space(base: TrialConfig, space: dict[str, Any]) -> dict[str, Any]:
    """The Tune ``param_space``: `base` with `space` laid over it, grid options completed."""
    return _overlay(base.to_nested(), space, "")


def expand(space: dict[str, Any]) -> list[dict[str, Any]]:
    """Every trial of a ``param_space``: the Cartesian product of its grids, in order."""
    grids = list(_grids(space, ()))
    trials = []
    for choice in itertools.product(*(options for _, options in grids)):
        trial = copy.deepcopy(space)
        for (path, _), value in zip(grids, choice):
            node = trial
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = copy.deepcopy(value)
        trials.append(trial)
    return trials


def trials_of(base: TrialConfig, space: dict[str, Any]) -> tuple[dict[str, Any], list[TrialConfig]]:
    """The ``param_space`` and its typed trials (ConfigError names any bad key or value)."""
    nested = param_space(base, space)
    return nested, [TrialConfig.from_nested(trial) for trial in expand(nested)]


def knobs(trials: list[TrialConfig]) -> list[str]:
    """The dotted keys whose value differs between trials (in config order)."""
    flats = [t.flat() for t in trials]
    keys = list(dict.fromkeys(k for flat in flats for k in flat))
    return [k for k in keys if len({repr(flat.get(k)) for flat in flats}) > 1]


def grid_keys(space: dict[str, Any], trial: TrialConfig) -> list[str]:
    """The dotted keys a sweep's grids set, as `trial` names them (in its config order).

    The sweep's knobs when none varies (a grid of one value, ``--crop-scale-mins 0.5``):
    its child run is still named by what the sweep set, not by Ray's trial id. A grid at
    a section sets every key its options name (``name`` as ``method``, ``source`` as
    ``data.<role>``); one at ``invariances``/``probes`` sets the selection.
    """
    keys: set[str] = set()
    for path, options in _grids(space, ()):
        dotted = ".".join(map(str, path))
        for option in options:
            if not isinstance(option, dict) or dotted in SELECTIONS:
                keys.add(dotted)
                continue
            for key in option:
                keys.add(dotted if key in (PART_NAME_KEY, SOURCE_KEY) else f"{dotted}.{key}")
    return [k for k in trial.flat() if k in keys]


def sweep_selections(base: TrialConfig, space: dict[str, Any]) -> dict[str, str]:
    """The part selections (``method``, ``invariances``, ``probes``) of the sweep's first
    trial that differ from `base`, as ``--set`` values.

    The command line applies them before the user's overrides, so that ``--set`` may name
    the data roles and settings of the parts the sweep trains (``frame_gap.py --set
    data.video.root=DIR``: FTI reads ``data.video``, the preset's MoCo v2 does not). A
    ``--set`` of the same key wins.
    """
    first = trials_of(base, space)[1][0].flat()
    mine = base.flat()
    return {k: str(first[k]) for k in PART_SELECTIONS if first[k] != mine[k]}


def _overlay(base: dict[str, Any], space: Any, path: str) -> dict[str, Any]:
    if not isinstance(space, dict):
        raise ConfigError(f"search space {path or '(top)'} must be a mapping, got {space!r}")
    out = copy.deepcopy(base)
    for key, value in space.items():
        here = f"{path}.{key}" if path else str(key)
        if isinstance(value, Domain):
            raise ConfigError(f"search space {here}: only tune.grid_search is supported, so that every "
                              "trial is checked before the sweep starts")
        if is_grid(value):
            options = value[GRID]
            if not isinstance(options, (list, tuple)) or not options:
                raise ConfigError(f"search space {here} needs a non-empty list of values")
            out[key] = {GRID: [_complete(out.get(key), option, here) for option in options]}
        elif here in SELECTIONS:
            out[key] = _complete(out.get(key), value, here)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _overlay(out[key], value, here)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _complete(base: Any, option: Any, path: str) -> Any:
    """A grid option at a section is a partial section: complete it from the base."""
    if list(_grids(option, ())) or isinstance(option, Domain):
        raise ConfigError(f"search space {path}: a grid option cannot hold another grid; "
                          "put each grid at its own key (they combine as a product)")
    if not (isinstance(option, dict) and isinstance(base, dict)):
        return copy.deepcopy(option)
    if path in SELECTIONS:
        return {name: _overlay(base.get(name, {}), settings or {}, f"{path}.{name}")
                for name, settings in option.items()}
    for key in (PART_NAME_KEY, SOURCE_KEY):
        if key in option and option[key] != base.get(key):
            return copy.deepcopy(option)  # another part: from its own defaults
    return _overlay(base, option, path)


def _grids(node: Any, path: tuple):
    if is_grid(node):
        yield path, node[GRID]
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _grids(value, (*path, key))
