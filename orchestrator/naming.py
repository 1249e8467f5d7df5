"""Short labels for a trial's swept knobs: `crop_min=0.08`, `fti k=5 seed=1`.

MLflow's runs table shows about 20 characters of a run name before cutting it, and a
terminal table has 100 columns: a dotted config key (`method.crop_scale_min`) would fill
either before its value shows. The full key stays a param of the run; these labels are for
reading only.
"""
from __future__ import annotations

from typing import Any

# Keys whose last dotted part says too little or too much; any other key is shown by it.
SHORT_KEYS = {
    "method.crop_scale_min": "crop_min",
    "method.crop_scale_max": "crop_max",
    "method.frame_gap": "k",  # the paper's frame gap k
    "method.track_threshold": "thr",
}
# Knobs whose value names itself (a method's registered name): shown without `key=`.
BARE_KEYS = frozenset({"method"})
SEED = "seed"
# An epochs=0 trial trains nothing: a study's random-initialisation row (orchestrator.study).
RANDOM_INIT_LABEL = "random-init"


def short_key(key: str) -> str:
    return SHORT_KEYS.get(key, key.rsplit(".", 1)[-1])


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def trial_label(values: dict[str, Any], knobs: list[str], fallback: str = "") -> str:
    """The knobs' values, the seed last (trials differing only by it read as repeats).

    A knob the trial lacks (a setting of another grid choice) is left out, not shown as None.
    """
    ordered = [k for k in knobs if k != SEED] + [k for k in knobs if k == SEED]
    parts = [RANDOM_INIT_LABEL if k == "epochs" and values[k] == 0
             else _value(values[k]) if k in BARE_KEYS else f"{short_key(k)}={_value(values[k])}"
             for k in ordered if values.get(k) is not None]
    return " ".join(parts) or fallback
