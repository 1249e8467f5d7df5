"""Search spaces: Tune's nested param_space, completed, expanded and checked on the driver."""
from __future__ import annotations

import pytest
from ray import tune

from orchestrator.config import ConfigError, TrialConfig
from orchestrator.search import expand, knobs, param_space, trials_of


def test_a_grid_at_a_key_is_a_product_with_the_other_grids():
    _, trials = trials_of(TrialConfig(), {"seed": tune.grid_search([0, 1]),
                                          "method": {"crop_scale_min": tune.grid_search([0.2, 0.5])}})
    assert sorted((t.seed, t.method.crop_scale_min) for t in trials) == [(0, 0.2), (0, 0.5), (1, 0.2), (1, 0.5)]
    assert all(t.method.queue_size == 256 for t in trials)  # the rest of the section is the base's
    assert knobs(trials) == ["seed", "method.crop_scale_min"]


def test_a_grid_at_a_section_couples_its_values():
    pairs = [(0.08, 0.5), (0.5, 1.0)]
    space, trials = trials_of(TrialConfig(), {"method": tune.grid_search(
        [{"crop_scale_min": lo, "crop_scale_max": hi} for lo, hi in pairs])})
    assert [(t.method.crop_scale_min, t.method.crop_scale_max) for t in trials] == pairs
    # Tune gets complete sections: its own expansion gives the same trials.
    assert all(option["queue_size"] == 256 for option in space["method"]["grid_search"])
    assert knobs(trials) == ["method.crop_scale_min", "method.crop_scale_max"]


def test_a_knob_of_one_part_and_a_selection():
    _, trials = trials_of(TrialConfig(), {
        "data": {"pretrain": tune.grid_search([{"background": "plain"},
                                               {"source": "image-folder", "root": "/data/imagenet"}])},
        "invariances": tune.grid_search([{"viewpoint": {}}, {"illumination_color": {}, "viewpoint": {}}]),
    })
    assert len(trials) == 4
    sources = {(t.data["pretrain"].name, getattr(t.data["pretrain"], "background", None)) for t in trials}
    assert sources == {("synthetic-objects", "plain"), ("image-folder", None)}
    assert {tuple(p.name for p in t.invariances) for t in trials} == {("viewpoint",), ("illumination_color", "viewpoint")}
    assert "data.pretrain.root" in knobs(trials)


def test_random_domains_nested_grids_and_bad_keys_are_refused_before_ray():
    with pytest.raises(ConfigError, match="only tune.grid_search"):
        param_space(TrialConfig(), {"lr": tune.loguniform(1e-3, 1e-1)})
    with pytest.raises(ConfigError, match="cannot hold another grid"):
        param_space(TrialConfig(), {"method": tune.grid_search([{"queue_size": tune.grid_search([64, 128])}])})
    with pytest.raises(ConfigError, match="non-empty list"):
        param_space(TrialConfig(), {"seed": tune.grid_search([])})
    with pytest.raises(ConfigError, match="unknown trial config key 'method.crop_min'"):
        trials_of(TrialConfig(), {"method": {"crop_min": tune.grid_search([0.1])}})


def test_expansion_matches_tunes_own():
    from ray.tune.search.variant_generator import generate_variants

    space = param_space(TrialConfig(), {"seed": tune.grid_search([0, 1]), "method": tune.grid_search(
        [{"crop_scale_min": 0.1}, {"crop_scale_min": 0.3}])})
    ours = sorted(map(repr, expand(space)))
    tunes = sorted(repr(variant) for _, variant in generate_variants(space))
    assert ours == tunes
