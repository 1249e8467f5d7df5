"""Block shuffling: an image cut into b x b blocks whose positions are permuted.

Neyshabur, Sedghi & Zhang, "What is being transferred in transfer learning?" (NeurIPS
2020; the feature-reuse experiment summarised in ../shared/reference/seeds/002): downstream
images are partitioned into blocks of b x b pixels and the blocks shuffled, before training
and testing, pretrained against randomly initialised networks. Small blocks keep only
low-level statistics, large blocks keep large-scale structure; b = image side is the image
itself. How much a representation's probe score falls as b shrinks says how much of it
comes from large-scale structure.

Each image gets its own permutation, drawn from ``(seed, index)`` alone, so a set is
shuffled the same way whatever the order, batching or worker that reads it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["BlockShuffled", "block_permutation", "block_shuffle"]


def block_permutation(num_blocks: int, seed: int, index: int) -> np.ndarray:
    """The permutation of `num_blocks` block positions for image `index` under `seed`."""
    return np.random.default_rng([seed, index]).permutation(num_blocks)


def block_shuffle(image: torch.Tensor, block: int, permutation: np.ndarray | torch.Tensor) -> torch.Tensor:
    """`image` (C x H x W) cut into `block` x `block` blocks, in row-major order, with block
    ``k`` of the result being block ``permutation[k]`` of `image`.

    H and W must be multiples of `block`. Reshapes only: pixels within a block keep their
    arrangement, and the result holds exactly the pixels of `image`.
    """
    if image.ndim != 3:
        raise ValueError(f"block_shuffle takes one C x H x W image, got shape {tuple(image.shape)}")
    channels, height, width = image.shape
    if block < 1 or height % block or width % block:
        raise ValueError(f"block={block} must divide the image's height {height} and width {width}")
    rows, cols = height // block, width // block
    permutation = torch.as_tensor(np.asarray(permutation), dtype=torch.long)
    if sorted(permutation.tolist()) != list(range(rows * cols)):
        raise ValueError(f"not a permutation of the {rows * cols} blocks")
    # C x rows x b x cols x b -> (rows * cols) x C x b x b: one entry per block, row-major.
    blocks = image.reshape(channels, rows, block, cols, block).permute(1, 3, 0, 2, 4).reshape(rows * cols, channels,
                                                                                             block, block)
    shuffled = blocks[permutation]
    return shuffled.reshape(rows, cols, channels, block, block).permute(2, 0, 3, 1, 4).reshape(channels, height, width)


class BlockShuffled(Dataset):
    """A dataset of ``(image, label)`` items (images C x H x W tensors, already transformed)
    with every image block-shuffled: image ``i`` by ``block_permutation(blocks, seed, i)``.

    Items that are ``None`` (an unreadable file, `datasets.image_folder.ImagePathDataset`)
    stay ``None``.
    """

    def __init__(self, dataset: Dataset, block: int, seed: int = 0):
        self.dataset, self.block, self.seed = dataset, int(block), int(seed)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index]
        if item is None:
            return None
        image, label = item
        blocks = (image.shape[-2] // self.block) * (image.shape[-1] // self.block) if self.block > 0 else 0
        return block_shuffle(image, self.block, block_permutation(blocks, self.seed, index)), label
