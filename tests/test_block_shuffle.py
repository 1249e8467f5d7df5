"""Block shuffling (Neyshabur et al. 2020) and its probe: checked against slicing by loops."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.tiny import tiny_config
from trainables.block_shuffle import BlockShuffled, block_permutation, block_shuffle


def _block(image: torch.Tensor, k: int, block: int) -> torch.Tensor:
    """Block k (row-major) of a C x H x W image, by slicing."""
    cols = image.shape[-1] // block
    r, c = divmod(k, cols)
    return image[:, r * block:(r + 1) * block, c * block:(c + 1) * block]


@pytest.fixture
def image():
    return torch.rand(3, 12, 8, generator=torch.Generator().manual_seed(0))


def test_a_block_the_size_of_the_image_is_the_image(image):
    square = image[:, :8, :8]
    assert torch.equal(block_shuffle(square, 8, block_permutation(1, 5, 0)), square)
    assert torch.equal(BlockShuffled([(square, 1)], block=8, seed=3)[0][0], square)


@pytest.mark.parametrize("block", [1, 2, 4])
def test_each_block_moves_whole_to_its_new_place(image, block):
    blocks = (12 // block) * (8 // block)
    permutation = block_permutation(blocks, seed=7, index=2)
    out = block_shuffle(image, block, permutation)
    assert out.shape == image.shape
    for k in range(blocks):
        assert torch.equal(_block(out, k, block), _block(image, permutation[k], block))
    # The pixels are those of the image, rearranged, each channel alike.
    for c in range(3):
        assert torch.equal(out[c].flatten().sort().values, image[c].flatten().sort().values)
    assert not torch.equal(out, image)


def test_the_shuffle_is_seeded_per_image_and_does_not_depend_on_the_order_read():
    items = [(torch.rand(3, 8, 8), i) for i in range(5)]
    first, again = BlockShuffled(items, 2, seed=1), BlockShuffled(items, 2, seed=1)
    backwards = [again[i] for i in reversed(range(5))][::-1]
    assert all(torch.equal(first[i][0], backwards[i][0]) and first[i][1] == i for i in range(5))
    assert not torch.equal(first[0][0], BlockShuffled(items, 2, seed=2)[0][0])
    # Two images of one set get different permutations.
    assert not np.array_equal(block_permutation(16, 1, 0), block_permutation(16, 1, 1))
    assert BlockShuffled([None], 2)[0] is None  # an unreadable file stays skipped


def test_refuses_a_block_that_does_not_tile_the_image(image):
    with pytest.raises(ValueError, match="must divide"):
        block_shuffle(image, 5, np.arange(2))
    with pytest.raises(ValueError, match="not a permutation"):
        block_shuffle(image, 4, np.zeros(6, int))


def test_the_probe_at_full_block_size_is_the_linear_probe_and_reports_random_init(data_cache):
    from trainables.evaluation import evaluate
    from trainables.models import resnet_backbone

    trial = tiny_config(data_cache).override({"invariances": "", "probes": "linear,block_shuffle",
                                              "probes.block_shuffle.block_sizes": "32,8"})
    assert trial.problems() == []
    torch.manual_seed(0)
    backbone, _ = resnet_backbone(trial.arch)
    metrics = evaluate(backbone, trial, "cpu")
    assert metrics["probe/block_shuffle_b32_top1"] == pytest.approx(metrics["probe/linear_top1"])
    assert {"probe/block_shuffle_b8_top1", "probe/block_shuffle_b8_top1_random_init",
            "probe/block_shuffle_b32_top1_random_init"} <= set(metrics)
    assert all(0.0 <= v <= 100.0 for k, v in metrics.items() if k.startswith("probe/"))
    odd = tiny_config(data_cache).override({"probes": "block_shuffle", "probes.block_shuffle.block_sizes": "5"})
    assert any("5 does not divide image_size=32" in p for p in odd.problems())
