"""The block-shuffle probe: the linear probe on block-shuffled images, pretrained against
random init (Neyshabur et al. 2020's feature-reuse experiment; trainables.block_shuffle).

For every block size b it reports ``probe/block_shuffle_b<b>_top1``: the linear probe
(`linear_probe_top1`, fit on ``train/``, scored on ``val/``) on features of images whose
b x b blocks were shuffled, and with ``random_init`` the same for a randomly initialised
trunk of the trial's architecture and seed, ``probe/block_shuffle_b<b>_top1_random_init``:
the gap between the two is what pretraining adds at that block size. b = image_size is the
linear probe on the images themselves.

Features are extracted in this process from the evaluated network
(``features.backbone``, the trial's scored layer), not through the cached Ray Data path:
that path reads files, and these images exist only shuffled.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from datasets.sources.base import IMAGE_FOLDER, DataRole, split_dir
from trainables.probes.base import PROBES, Probe


def parse_block_sizes(text: str) -> list[int]:
    """``"4,8,16"`` -> ``[4, 8, 16]`` (ValueError on anything else)."""
    sizes = [int(part) for part in str(text).split(",") if part.strip()]
    if not sizes or any(size < 1 for size in sizes):
        raise ValueError(f"block_sizes={text!r} must be positive integers, comma separated")
    return sizes


@PROBES.register
@dataclass(frozen=True)
class BlockShuffleProbe(Probe):
    name: ClassVar[str] = "block_shuffle"
    roles: ClassVar[dict[str, DataRole]] = {"probe": DataRole(IMAGE_FOLDER, "synthetic-objects", ("train", "val"))}
    block_sizes: str = "4,8,16"  # block sides in pixels, each a divisor of image_size
    random_init: bool = True
    max_iter: int = 1000

    def problems(self, trial: Any) -> list[str]:
        try:
            sizes = parse_block_sizes(self.block_sizes)
        except ValueError as err:
            return [str(err)]
        out = [f"block_sizes={self.block_sizes!r}: {size} does not divide image_size={trial.image_size}"
               for size in sizes if int(trial.image_size) % size]
        return out + ([] if self.max_iter >= 1 else [f"max_iter={self.max_iter} must be at least 1"])

    def evaluate(self, root: Path, features: Any, trial: Any) -> dict[str, float]:
        import torch

        from datasets.image_folder import ImageFolderDataset
        from trainables.block_shuffle import BlockShuffled
        from trainables.features import extract_features
        from trainables.models import resnet_backbone, scored_layer
        from trainables.probes.linear import linear_probe_top1

        device = getattr(features, "device", "cpu")
        networks = {"": features.backbone}
        if self.random_init:
            with torch.random.fork_rng(devices=[]):  # the trial's own random stream is left as it was
                torch.manual_seed(int(trial.seed))
                trunk, _ = resnet_backbone(trial.arch)
            networks["_random_init"] = scored_layer(trunk, trial.eval_layer).to(device)
        train = ImageFolderDataset(split_dir(root, "train"), transform=features.transform)
        val = ImageFolderDataset(split_dir(root, "val"), transform=features.transform)
        seed = int(trial.seed)
        metrics = {}
        for block in parse_block_sizes(self.block_sizes):
            # Train and val images draw their permutations from different seeds.
            shuffled_train, shuffled_val = BlockShuffled(train, block, 2 * seed), BlockShuffled(val, block, 2 * seed + 1)
            for suffix, network in networks.items():
                train_x, train_y, _ = extract_features(network, shuffled_train, trial.eval_batch_size, device)
                val_x, val_y, _ = extract_features(network, shuffled_val, trial.eval_batch_size, device)
                metrics[f"probe/block_shuffle_b{block}_top1{suffix}"] = linear_probe_top1(
                    train_x, train_y, val_x, val_y, seed=seed, max_iter=self.max_iter)
        return metrics
