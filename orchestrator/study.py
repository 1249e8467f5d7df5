"""Studies: a sweep that answers a claim of the paper, with paired seeds and a verdict.

A study is a sweep's search space run as arms (the values of one knob) x paired seeds
(one seed = one initial weights and data order in every arm), plus a random-initialisation
row per arm and seed (``epochs=0``: the same seed's initial weights, evaluated the same
way). From the child runs it reads:

- per arm, each metric's mean and 95% t-interval over its seeds;
- per claim ("metric higher for arm a than for arm b"), the paired differences a - b over
  the seeds present in both arms, their mean and 95% t-interval (``scipy.stats``); arm b
  may be ``random-init@<arm>``, that arm's random-init rows (a claim about what
  pretraining adds to the same initial weights);
- the learning gate: on every seed an arm's probe beats the same seed's random-init row by
  ``probe_margin`` points, its viewpoint RIS by ``ris_margin`` points, and its final
  ``pretrain/loss`` is below ln(K + 1) - ``loss_margin`` (K = ``method.queue_size``; a
  loss at ln(K + 1) is guessing among the K + 1 keys), or below ln(C) - ``loss_margin``
  for the study's ``class_arms`` (cross-entropy over the C classes of its pretraining
  root, the figure ``data/pretrain_classes`` the supervised methods log); the study's
  ``loss_only_arms`` pass on the loss alone (random-label pretraining: whether it beats
  random init is what a claim asks, not a sign of learning);
- a verdict per claim: "inconclusive: not learned" when an arm of the claim fails the gate,
  "inconclusive: fewer than 3 seeds" below 3 paired seeds, else "reproduced" when the
  interval excludes 0 in the paper's direction, "contradicted" when it excludes 0 the
  other way, "inconclusive" when it holds 0; for an equivalence claim (``margin`` > 0,
  "a and b differ by less than the margin"), "reproduced" when the interval lies inside
  +/- margin, "contradicted" when it lies wholly outside it, else "inconclusive"; for a
  non-inferiority claim (``margin`` > 0 and ``one_sided``, "a is no worse than b by the
  margin or more"), "reproduced" when the interval, read in the paper's direction, lies
  above -margin, "contradicted" when it lies wholly below it, else "inconclusive".

The sweep's parent run keeps the study's definition (tag ``dssl.study``, JSON) and gets
``tables/verdict.md``, ``tables/verdict.csv`` and ``tables/paired_differences.png``;
``python -m orchestrator.study <sweep name | parent run id>`` rebuilds them for any past
study from its child runs.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import io
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from datasets.registry import ConfigError
from orchestrator.rows import Interval, number, summary_rows, t_interval

TAG_STUDY = "dssl.study"  # parent run: the Study as JSON
RANDOM_INIT = "random-init"  # the arm label of an epochs=0 row
SEED = "seed"
EPOCHS = "epochs"
QUEUE_SIZE = "method.queue_size"
CLASSES = "data/pretrain_classes"  # a class arm's figure: C of its cross-entropy (supervised.prepare)
LOSS = "pretrain/loss"
MIN_SEEDS = 3
DEFAULT_SEEDS = (0, 1, 2)
REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"
NOT_LEARNED = "inconclusive: not learned"
FEW_SEEDS = f"inconclusive: fewer than {MIN_SEEDS} seeds"
VERDICT_FILES = ("tables/verdict.md", "tables/verdict.csv", "tables/paired_differences.png")

# The regime in which MoCo v2 learns within minutes on 2 CPU cores (BENCHMARKS.md, "Does
# pretraining learn?" and "Settings that learn"): each setting removes a reason the
# default preset learns slowly on a CPU budget. The studies and the learning benchmark
# (`benchmarks.bench_learning.QUICK_CHANGES`) start from it and add their own data, epochs
# and readings.
SMALL_REGIME = {
    "image_size": 32,
    "cpus_per_worker": 2,
    "checkpoint_every": 1000,  # the last epoch only: a study reads the final weights
    "method.temperature": 0.1,  # sharper than MoCo v2's 0.2, as usual for small data
    "method.queue_size": 128,  # below the pretraining images (trainables.moco.queue_overlap_warning)
    # The probe's generated set: 600 held-out images on a plain background, a tighter estimate.
    "data.probe.classes": 4,
    "data.probe.train_per_class": 100,
    "data.probe.val_per_class": 150,
    "data.probe.background": "plain",
    # RIS on a small turntable set, every object scored.
    "data.aloi.objects": 8,
    "ris_max_objects": 0,
}
# The pretraining set of that regime when it is the generated objects (the crop-scale study,
# the learning test): 400 images on a plain background (clutter lets MoCo tell images
# apart by their backgrounds), each seen 38 times in 240 steps.
SMALL_PRETRAIN_OBJECTS = {
    "data.pretrain.classes": 4,
    "data.pretrain.train_per_class": 100,
    "data.pretrain.val_per_class": 150,
    "data.pretrain.background": "plain",
}


def arm_label(value: Any) -> str:
    """One spelling of a knob value: 0.2 and "0.2" (a param read back) are the same arm."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:g}"
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


@dataclass(frozen=True)
class Claim:
    """The paper's direction for one metric: `metric` higher for `arm_a` than for `arm_b`
    (`expected_sign` = +1), or lower (-1). With `margin` > 0 it is an equivalence claim
    instead: `arm_a` and `arm_b` differ by less than `margin` (the metric's units), as in
    Cole et al.'s "little benefit beyond 500k images"; with `one_sided` too, a
    non-inferiority claim: `arm_a` is not worse than `arm_b` (in the `expected_sign`
    direction) by `margin` or more, as in Cole et al.'s "pooling does not help"."""

    name: str
    metric: str  # e.g. "ris/occlusion/top10", "probe/voc07_boxes_map"
    arm_a: str
    arm_b: str
    expected_sign: int = 1
    margin: float = 0.0  # > 0: an equivalence claim, |a - b| < margin
    one_sided: bool = False  # with margin > 0: non-inferiority, sign x (a - b) > -margin

    def __post_init__(self) -> None:
        if self.expected_sign not in (1, -1):
            raise ValueError(f"claim {self.name!r}: expected_sign={self.expected_sign} must be +1 or -1")
        if self.margin < 0:
            raise ValueError(f"claim {self.name!r}: margin={self.margin} must be at least 0 (0: a sign claim)")
        if self.one_sided and self.margin <= 0:
            raise ValueError(f"claim {self.name!r}: one_sided needs a margin > 0 (the non-inferiority margin)")
        object.__setattr__(self, "arm_a", arm_label(self.arm_a))
        object.__setattr__(self, "arm_b", arm_label(self.arm_b))

    @property
    def direction(self) -> str:
        if self.one_sided:
            return (f"{self.arm_a} >= {self.arm_b} - {self.margin:g}" if self.expected_sign > 0
                    else f"{self.arm_a} <= {self.arm_b} + {self.margin:g}")
        if self.margin > 0:
            return f"|{self.arm_a} - {self.arm_b}| < {self.margin:g}"
        return f"{self.arm_a} {'>' if self.expected_sign > 0 else '<'} {self.arm_b}"


@dataclass(frozen=True)
class Study:
    """A sweep's study: its knob's arms, the claims about them, the gate's margins and the
    settings (dotted ``--set`` overrides) it runs with."""

    knob: str  # the dotted key whose value names an arm, e.g. "method.crop_scale_min"
    arms: tuple[str, ...]
    claims: tuple[Claim, ...]
    probe: str = "probe/linear_top1"  # the gate's probe
    probe_margin: float = 2.0  # points over the same seed's random init
    ris: str = "ris/viewpoint/top10"  # the gate's RIS
    ris_margin: float = 5.0
    loss_margin: float = 1.0  # nats below ln(K + 1), or ln(C) for the class arms
    settings: dict[str, Any] = field(default_factory=dict)
    class_arms: tuple[str, ...] = ()  # trained by cross-entropy over C classes: chance loss ln(C)
    loss_only_arms: tuple[str, ...] = ()  # gated by their loss alone
    reported: tuple[str, ...] = ()  # metrics shown per arm without a claim

    def __post_init__(self) -> None:
        object.__setattr__(self, "arms", tuple(arm_label(a) for a in self.arms))
        object.__setattr__(self, "claims", tuple(self.claims))
        for name in ("class_arms", "loss_only_arms", "reported"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        baselines = {f"{RANDOM_INIT}@{arm}" for arm in self.arms}
        problems = [f"claim {c.name!r} names arm {arm!r}, not one of {', '.join(self.arms)}"
                    for c in self.claims for arm in (c.arm_a, c.arm_b)
                    if arm not in self.arms and not (arm == c.arm_b and arm in baselines)]
        problems += [f"{name} names {arm!r}, not one of {', '.join(self.arms)}"
                     for name in ("class_arms", "loss_only_arms") for arm in getattr(self, name)
                     if arm not in self.arms]
        if len(set(self.arms)) < 2 or len(set(self.arms)) < len(self.arms):
            problems.append(f"a study needs two or more distinct arms, got {self.arms}")
        if problems:
            raise ValueError("; ".join(problems))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Study":
        values = json.loads(text)
        values["claims"] = tuple(Claim(**c) for c in values["claims"])
        values["arms"] = tuple(values["arms"])
        for name in ("class_arms", "loss_only_arms", "reported"):  # absent from studies logged before them
            values[name] = tuple(values.get(name, ()))
        return cls(**values)

    def metrics(self) -> list[str]:
        """The claims' metrics, then the gate's, then the reported ones (each once)."""
        return list(dict.fromkeys([c.metric for c in self.claims] + [self.probe, self.ris, LOSS]
                                  + list(self.reported)))

    # -- the sweep it runs -------------------------------------------------------------
    def plan(self, base, space: dict[str, Any], overrides: dict[str, Any],
             seeds: list[int]) -> tuple[Any, dict[str, Any]]:
        """`(base trial, search space)` of the study: the sweep's `space` kept to the arms,
        the study's settings then the user's `overrides` laid over it (where the space sets
        a key) or over `base` (where it does not), the seeds and an ``epochs=0`` row."""
        from ray import tune

        from orchestrator.search import SELECTIONS

        space = keep_arms(space, self.knob, self.arms)
        changes: dict[str, Any] = {}
        for key, value in {**self.settings, **overrides}.items():
            # A selection (which invariance sets, which probes) goes to the base as well: the
            # base's own checks (a data role no selected part reads) must see it.
            if not set_in_space(space, key, value) or key in SELECTIONS:
                changes[key] = value
        # The base takes the first arm first: a setting only the arms read (the videos of
        # the video methods) is then checked against a trial that reads it.
        base = base.override({self.knob: first_arm(space, self.knob)} | changes)
        epochs = space.get(EPOCHS, base.epochs)
        if isinstance(epochs, dict):
            raise ConfigError("a study sweeps epochs itself (its epochs=0 rows): the sweep's space "
                              "must not grid over epochs")
        if int(epochs) < 1:
            raise ConfigError(f"epochs={epochs}: a study's arms train (epochs >= 1); "
                              "its epochs=0 rows are added by the study")
        space[EPOCHS] = tune.grid_search([int(epochs), 0])
        space[SEED] = tune.grid_search(sorted(dict.fromkeys(int(s) for s in seeds)))
        return base, space


# -- the search space -------------------------------------------------------------------
def _grid(node: Any) -> list | None:
    return node["grid_search"] if isinstance(node, dict) and set(node) == {"grid_search"} else None


def _option_arm(option: Any, rest: list[str]) -> Any:
    """The arm an option of a grid names: its value at `rest`, or the part it names."""
    for key in rest:
        option = option.get(key) if isinstance(option, dict) else None
    if isinstance(option, dict):
        return option.get("name", option.get("source"))
    return option


def _knob_grid(space: dict[str, Any], knob: str) -> tuple[dict[str, Any], str, list[str]]:
    """`(node, key, rest)`: ``node[key]`` is the grid that sweeps `knob` in `space`, and
    `rest` the knob's path inside each option (ConfigError when the space does not sweep it)."""
    parts = knob.split(".")
    node: Any = space
    for i, key in enumerate(parts):
        if not isinstance(node, dict) or key not in node:
            break
        if _grid(node[key]) is not None:
            return node, key, parts[i + 1:]
        node = node[key]
    raise ConfigError(f"the study's knob {knob} is not swept by the sweep's search space")


def keep_arms(space: dict[str, Any], knob: str, arms: tuple[str, ...]) -> dict[str, Any]:
    """A copy of `space` whose grid over `knob` keeps only the options naming an arm
    (ConfigError naming a missing arm or a space that does not sweep the knob)."""
    space = copy.deepcopy(space)
    node, key, rest = _knob_grid(space, knob)
    options = _grid(node[key])
    kept = [o for o in options if arm_label(_option_arm(o, rest)) in arms]
    found = {arm_label(_option_arm(o, rest)) for o in kept}
    if missing := [a for a in arms if a not in found]:
        named = ", ".join(arm_label(_option_arm(o, rest)) for o in options)
        raise ConfigError(f"the study's arms {', '.join(missing)} of {knob} are not in the "
                          f"sweep's grid ({named}); add them to the sweep's options")
    node[key] = {"grid_search": kept}
    return space


def first_arm(space: dict[str, Any], knob: str) -> Any:
    """The value of `knob` in the first option of the space's grid over it."""
    node, key, rest = _knob_grid(space, knob)
    return _option_arm(_grid(node[key])[0], rest)


def set_in_space(space: dict[str, Any], key: str, value: Any) -> bool:
    """Set a dotted `key` where `space` sets it (in every option of a grid on its way);
    False when the space does not set it (it belongs to the base trial)."""
    from orchestrator.search import SELECTIONS

    if key in SELECTIONS and isinstance(value, str):  # a selection: "a,b" -> {"a": {}, "b": {}}
        value = {name.strip(): {} for name in value.split(",") if name.strip()}
    parts = key.split(".")
    node: Any = space
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            return False
        child = node[part]
        if _grid(child) is not None:
            if i == len(parts) - 1:
                raise ConfigError(f"--set {key}: the sweep sweeps {key}; set it with the sweep's own options")
            for option in _grid(child):
                if not isinstance(option, dict):
                    raise ConfigError(f"--set {key}: {'.'.join(parts[:i + 1])} is swept over values, not sections")
                target = option
                for sub in parts[i + 1:-1]:
                    target = target.setdefault(sub, {})
                target[parts[-1]] = copy.deepcopy(value)
            return True
        if i == len(parts) - 1:
            if isinstance(child, dict) and not isinstance(value, dict):
                raise ConfigError(f"--set {key}={value!r}: the sweep sets {key} as a section; set its keys")
            node[part] = copy.deepcopy(value)
            return True
        node = child
    return False


# -- statistics -------------------------------------------------------------------------
@dataclass(frozen=True)
class PairedDifference:
    """a - b over the seeds both arms have: per seed, and its mean with a 95% t-interval."""

    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    interval: Interval
    p_value: float | None  # paired t-test (scipy.stats.ttest_rel); None below two seeds


def paired_difference(a: dict[int, float], b: dict[int, float]) -> PairedDifference:
    from scipy import stats

    seeds = tuple(sorted(set(a) & set(b)))
    diffs = tuple(a[s] - b[s] for s in seeds)
    p = None
    if len(seeds) >= 2 and len(set(diffs)) > 1:
        p = float(stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue)
    return PairedDifference(seeds, diffs, t_interval(list(diffs)), p)


# -- the rows ---------------------------------------------------------------------------
def arm_of(row: dict[str, Any], study: Study) -> str:
    """An epochs=0 row is the random initialisation whatever its knob says."""
    return RANDOM_INIT if number(row.get(EPOCHS)) == 0 else arm_label(row.get(study.knob))


def cells(rows: list[dict[str, Any]], study: Study, metric: str) -> dict[str, dict[int, float]]:
    """arm -> seed -> `metric` (the mean of duplicate runs, which a resumed store may hold);
    finished runs only. Random-init rows are under RANDOM_INIT, and under
    ``random-init@<arm>`` by the arm whose config they evaluate."""
    found: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        value, seed = number(row.get(metric)), row.get(SEED)
        if value is None or seed is None or row.get("status", "FINISHED") != "FINISHED":
            continue
        arm = arm_of(row, study)
        found[arm][int(seed)].append(value)
        if arm == RANDOM_INIT:
            found[f"{RANDOM_INIT}@{arm_label(row.get(study.knob))}"][int(seed)].append(value)
    return {arm: {s: sum(v) / len(v) for s, v in seeds.items()} for arm, seeds in found.items()}


def _queue_sizes(rows: list[dict[str, Any]], study: Study) -> dict[str, dict[int, float]]:
    return cells(rows, study, QUEUE_SIZE)


# -- the gate ---------------------------------------------------------------------------
@dataclass(frozen=True)
class GateResult:
    arm: str
    failures: tuple[str, ...]  # one sentence per failed check and seed

    @property
    def passed(self) -> bool:
        return not self.failures


def _random_baseline(values: dict[str, dict[int, float]], arm: str, seed: int) -> float | None:
    """The same seed's random-init row of this arm's config, else of any arm (the mean)."""
    own = values.get(f"{RANDOM_INIT}@{arm}", {})
    return own.get(seed, values.get(RANDOM_INIT, {}).get(seed))


def _chance_loss(arm: str, seed: int, study: Study, queue, classes) -> tuple[float | None, str]:
    """`(chance loss, its formula)` of an arm's seed: ln(K + 1) for a queue of K keys, ln(C)
    for a class arm; None (and the missing param) when the row lacks it."""
    if arm in study.class_arms:
        c = classes.get(arm, {}).get(seed)
        if c is None:
            return None, f"no {CLASSES} figure (C of the ln(C) loss bound)"
        return math.log(c), f"ln({c:g})"
    k = queue.get(arm, {}).get(seed)
    if k is None:
        return None, f"no {QUEUE_SIZE} param (K of the ln(K+1) loss bound)"
    return math.log(k + 1), f"ln({k:g}+1)"


def learning_gate(rows: list[dict[str, Any]], study: Study) -> dict[str, GateResult]:
    """Per arm: on every seed it has, the probe and RIS margins over the same seed's random
    initialisation (not for the loss-only arms) and the final loss below its chance level
    (ln(K + 1), or ln(C) for a class arm) - loss_margin."""
    probe, ris, loss = (cells(rows, study, m) for m in (study.probe, study.ris, LOSS))
    queue, classes = _queue_sizes(rows, study), cells(rows, study, CLASSES)
    out = {}
    for arm in study.arms:
        seeds = sorted(set(probe.get(arm, {})) | set(ris.get(arm, {})) | set(loss.get(arm, {})))
        failures = [] if seeds else ["no finished run"]
        margins = () if arm in study.loss_only_arms else (
            (study.probe, probe, study.probe_margin), (study.ris, ris, study.ris_margin))
        for seed in seeds:
            for key, values, margin in margins:
                mine, base = values.get(arm, {}).get(seed), _random_baseline(values, arm, seed)
                if mine is None:
                    failures.append(f"seed {seed}: no {key}")
                elif base is None:
                    failures.append(f"seed {seed}: no random-init {key} to compare with")
                elif mine - base < margin:
                    failures.append(f"seed {seed}: {key} {mine:.2f} is {mine - base:+.2f} over random init "
                                    f"{base:.2f} (needs +{margin:g})")
            final, (chance, formula) = loss.get(arm, {}).get(seed), _chance_loss(arm, seed, study, queue, classes)
            if final is None:
                failures.append(f"seed {seed}: no {LOSS}")
            elif chance is None:
                failures.append(f"seed {seed}: {formula}")
            elif final >= (bound := chance - study.loss_margin):
                failures.append(f"seed {seed}: {LOSS} {final:.2f} is not below {formula} - "
                                f"{study.loss_margin:g} = {bound:.2f}")
        out[arm] = GateResult(arm, tuple(failures))
    return out


# -- verdicts ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    difference: PairedDifference
    verdict: str
    reason: str


def verdict_of(claim: Claim, difference: PairedDifference, gate: dict[str, GateResult]) -> tuple[str, str]:
    failed = [gate[arm] for arm in (claim.arm_a, claim.arm_b) if arm in gate and not gate[arm].passed]
    if failed:
        return NOT_LEARNED, "; ".join(f"arm {g.arm}: {g.failures[0]}"
                                      + (f" (+{len(g.failures) - 1} more)" if len(g.failures) > 1 else "")
                                      for g in failed)
    if len(difference.seeds) < MIN_SEEDS:
        return FEW_SEEDS, f"{len(difference.seeds)} paired seed(s) with {claim.metric} in both arms"
    low, high = difference.interval.low, difference.interval.high
    if claim.one_sided:
        # The interval of sign x (a - b): the paper's direction to the right.
        lower, upper = (low, high) if claim.expected_sign > 0 else (-high, -low)
        between = (f"the 95% interval [{lower:.2f}, {upper:.2f}] of "
                   f"{claim.arm_a} - {claim.arm_b}" + ("" if claim.expected_sign > 0 else ", sign flipped"))
        if lower > -claim.margin:
            return REPRODUCED, f"{between} lies above -{claim.margin:g}"
        if upper <= -claim.margin:
            return CONTRADICTED, f"{between} lies below -{claim.margin:g}"
        return INCONCLUSIVE, f"{between} crosses -{claim.margin:g}"
    if claim.margin > 0:
        between = f"the 95% interval [{low:.2f}, {high:.2f}] of {claim.arm_a} - {claim.arm_b}"
        if -claim.margin < low and high < claim.margin:
            return REPRODUCED, f"{between} lies inside +/-{claim.margin:g}"
        if low >= claim.margin or high <= -claim.margin:
            return CONTRADICTED, f"{between} lies outside +/-{claim.margin:g}"
        return INCONCLUSIVE, f"{between} crosses +/-{claim.margin:g}"
    if low > 0 or high < 0:
        sign = 1 if low > 0 else -1
        side = "above" if sign > 0 else "below"
        return (REPRODUCED if sign == claim.expected_sign else CONTRADICTED,
                f"the 95% interval [{low:.2f}, {high:.2f}] of {claim.arm_a} - {claim.arm_b} lies {side} 0")
    return INCONCLUSIVE, f"the 95% interval [{low:.2f}, {high:.2f}] holds 0"


@dataclass(frozen=True)
class StudyResult:
    study: Study
    arms: dict[str, dict[str, Interval]]  # arm (and random-init) -> metric -> interval over seeds
    gate: dict[str, GateResult]
    claims: list[ClaimResult]
    left_out: int  # runs not finished (failed, killed, running): not read


def analyse(rows: list[dict[str, Any]], study: Study) -> StudyResult:
    """Intervals, gate and verdicts of a study's rows (one per child run: its knob, seed,
    epochs, method.queue_size and final metrics, as `orchestrator.rows.summary_rows` gives)."""
    per_metric = {m: cells(rows, study, m) for m in study.metrics()}
    arms: dict[str, dict[str, Interval]] = {}
    for arm in (*study.arms, RANDOM_INIT):
        arms[arm] = {m: t_interval([v for _, v in sorted(per_metric[m].get(arm, {}).items())])
                     for m in study.metrics()}
    gate = learning_gate(rows, study)
    results = []
    for claim in study.claims:
        values = per_metric[claim.metric]
        difference = paired_difference(values.get(claim.arm_a, {}), values.get(claim.arm_b, {}))
        verdict, reason = verdict_of(claim, difference, gate)
        results.append(ClaimResult(claim, difference, verdict, reason))
    left_out = sum(1 for row in rows if row.get("status", "FINISHED") != "FINISHED")
    return StudyResult(study, arms, gate, results, left_out)


# -- reports ----------------------------------------------------------------------------
def _markdown(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in body)]


def verdict_markdown(result: StudyResult, title: str = "") -> str:
    study = result.study
    lines = [f"# Study verdict{': ' + title if title else ''}", "",
             f"Arms: `{study.knob}` = {', '.join(study.arms)}; random init = the same seed's initial "
             f"weights (epochs=0). Intervals: mean ± 95% t half-width over seeds.", "",
             "## Verdicts", ""]
    body = []
    for r in result.claims:
        d = r.difference
        interval = (f"[{d.interval.low:.2f}, {d.interval.high:.2f}]" if d.interval.half_width is not None
                    else "undefined (fewer than 2 seeds)")
        mean = f"{d.interval.mean:+.2f}" if d.interval.n else "-"
        body.append([r.claim.name, f"`{r.claim.metric}`", f"{r.claim.direction}", mean, interval,
                     ",".join(map(str, d.seeds)) or "none", f"**{r.verdict}**", r.reason])
    lines += _markdown(["claim", "metric", "paper", "mean a - b", "95% interval", "seeds", "verdict", "why"], body)
    lines += ["", "## Per arm", ""]
    metrics = study.metrics()
    lines += _markdown(["arm", *(f"`{m}`" for m in metrics)],
                       [[arm, *(result.arms[arm][m].text() for m in metrics)] for arm in result.arms])
    lines += ["", f"## Learning gate (probe `{study.probe}` +{study.probe_margin:g}, `{study.ris}` "
              f"+{study.ris_margin:g} over the same seed's random init; `{LOSS}` < ln(K+1) - {study.loss_margin:g}, "
              f"ln(C) for {', '.join(study.class_arms) or 'no arm'}; by the loss alone: "
              f"{', '.join(study.loss_only_arms) or 'no arm'})", ""]
    for arm, g in result.gate.items():
        lines.append(f"- {arm}: " + ("passes" if g.passed else "fails: " + "; ".join(g.failures)))
    if result.left_out:
        lines += ["", f"{result.left_out} run(s) did not finish and are left out."]
    return "\n".join(lines) + "\n"


def verdict_text(result: StudyResult) -> str:
    """The lines printed at the end of a study."""
    lines = ["Study verdict (95% intervals over paired seeds):"]
    for r in result.claims:
        d = r.difference
        stat = (f"{d.interval.mean:+.2f} [{d.interval.low:.2f}, {d.interval.high:.2f}]"
                if d.interval.half_width is not None else "no interval")
        lines.append(f"  {r.claim.name} ({r.claim.metric}, paper {r.claim.direction}): {r.verdict}; "
                     f"a - b = {stat} over {len(d.seeds)} seed(s); {r.reason}")
    for arm, g in result.gate.items():
        if not g.passed:
            lines.append(f"  gate: arm {arm} not learned ({len(g.failures)} check(s) failed; first: {g.failures[0]})")
    return "\n".join(lines)


def verdict_frame(result: StudyResult):
    import pandas as pd

    return pd.DataFrame([{
        "claim": r.claim.name, "metric": r.claim.metric, "arm_a": r.claim.arm_a, "arm_b": r.claim.arm_b,
        "expected_sign": r.claim.expected_sign, "seeds": " ".join(map(str, r.difference.seeds)),
        "mean_difference": r.difference.interval.mean if r.difference.interval.n else None,
        "ci_low": r.difference.interval.low, "ci_high": r.difference.interval.high,
        "p_value": r.difference.p_value, "verdict": r.verdict, "reason": r.reason,
    } for r in result.claims])


def paired_figure(result: StudyResult):
    """Each claim's paired difference a - b: the seeds' points, the mean and its 95% interval,
    0 marked, the paper's side shaded."""
    from matplotlib.figure import Figure

    claims = result.claims
    figure = Figure(figsize=(6.4, 1.2 + 0.6 * max(len(claims), 1)), layout="constrained")
    axes = figure.add_subplot()
    for y, r in enumerate(claims):
        d = r.difference
        # Oriented so that the paper's direction is to the right.
        sign = r.claim.expected_sign
        axes.scatter([sign * v for v in d.differences], [y] * len(d.differences), color="0.6", s=12, zorder=2)
        if d.interval.n:
            err = [[d.interval.half_width or 0.0], [d.interval.half_width or 0.0]]
            axes.errorbar([sign * d.interval.mean], [y], xerr=err, fmt="o", capsize=4, zorder=3,
                          color={REPRODUCED: "tab:green", CONTRADICTED: "tab:red"}.get(r.verdict, "tab:blue"))
    axes.axvline(0.0, color="black", linewidth=1)
    axes.set_yticks(range(len(claims)), [f"{r.claim.name}\n({r.claim.direction})" for r in claims], fontsize="small")
    axes.invert_yaxis()
    axes.set_xlabel("paired difference a - b (b - a where the paper says a < b), points")
    axes.set_title("Paired differences, mean and 95% interval\n(green: reproduced, red: contradicted, "
                   "blue: inconclusive; grey: one seed)", fontsize="medium")
    axes.grid(alpha=0.3, axis="x")
    return figure


# -- MLflow -----------------------------------------------------------------------------
def study_rows(children, study: Study) -> list[dict[str, Any]]:
    return summary_rows(children, [study.knob, SEED, EPOCHS, QUEUE_SIZE])  # + data/ figures


def log_verdict(client, parent_run_id: str, study: Study, children, title: str = "") -> StudyResult:
    """Analyse the children and write the verdict's table, CSV and chart on the parent."""
    result = analyse(study_rows(children, study), study)
    client.log_text(parent_run_id, verdict_markdown(result, title), VERDICT_FILES[0])
    buffer = io.StringIO()
    verdict_frame(result).to_csv(buffer, index=False)
    client.log_text(parent_run_id, buffer.getvalue(), VERDICT_FILES[1])
    client.log_figure(parent_run_id, paired_figure(result), VERDICT_FILES[2])
    return result


def find_parent(client, reference: str):
    """The parent run of a study: by run id, else by sweep name (the newest of that name);
    `orchestrator.compare.find_parent`, its not-found error as a ConfigError."""
    from orchestrator.compare import SweepNotFound, find_parent as find_sweep_parent

    try:
        return find_sweep_parent(client, reference)
    except SweepNotFound as err:
        raise ConfigError(f"{err} ({client.tracking_uri})") from None


def rebuild(reference: str, tracking_uri: str = "") -> StudyResult:
    """Recompute and re-log the verdict of a past study from its child runs."""
    from mlflow.tracking import MlflowClient

    from orchestrator.tracking.keys import TAG_PARENT, TAG_SWEEP
    from orchestrator.tracking.store import resolve_tracking_uri

    client = MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))
    parent = find_parent(client, reference)
    text = parent.data.tags.get(TAG_STUDY)
    if not text:
        raise ConfigError(f"run {parent.info.run_id} ({parent.info.run_name}) has no {TAG_STUDY} tag: "
                          "not a study (run the sweep with --study)")
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`{TAG_PARENT}` = '{parent.info.run_id}'", max_results=10000)
    title = parent.data.tags.get(TAG_SWEEP, parent.info.run_name or "")
    return log_verdict(client, parent.info.run_id, Study.from_json(text), children, title)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.study",
        description="Rebuild a past study's verdict (tables/verdict.md, .csv, paired_differences.png "
                    "on its parent run) from its child runs, and print it.")
    parser.add_argument("study", metavar="SWEEP_NAME_OR_PARENT_RUN_ID")
    parser.add_argument("--tracking-uri", default="",
                        help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    args = parser.parse_args(argv)
    try:
        result = rebuild(args.study, args.tracking_uri)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(verdict_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
