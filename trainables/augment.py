"""MoCo v2 augmentations on uint8 CHW tensors (torchvision.transforms.v2).

The paper (Sec. 4) studies exactly this pipeline, in particular the crop scale of
RandomResizedCrop, which the trial config exposes as `crop_scale_min`/`crop_scale_max`.
"""
from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def blur_kernel_size(image_size: int) -> int:
    """Odd Gaussian-blur kernel of about 10% of the image side (23 at 224 px, as MoCo v2)."""
    return max(3, int(0.1 * image_size) // 2 * 2 + 1)


def blur_sigma(image_size: int) -> tuple[float, float]:
    """MoCo v2's blur sigma range, (0.1, 2.0) px at 224 px, scaled with the image side, so
    that a smaller image is blurred as much relative to its size (at 64 px a fixed range
    would blur 3.5x more)."""
    scale = image_size / 224
    return 0.1 * scale, 2.0 * scale


def crop_scale_problem(lo: float, hi: float) -> str | None:
    """Why (`lo`, `hi`) is not a RandomResizedCrop area range (None if it is one)."""
    for name, value in (("crop_scale_min", lo), ("crop_scale_max", hi)):
        if not 0.0 < value <= 1.0:
            return f"{name}={value} is outside (0, 1]: it is a fraction of the image area"
    if lo > hi:
        return f"crop_scale_min={lo} is larger than crop_scale_max={hi}"
    return None


def mocov2_transform(image_size: int, crop_scale: tuple[float, float] = (0.2, 1.0)) -> v2.Compose:
    """One random view: MoCo v2's augmentation (Chen et al. 2020, 'aug+')."""
    lo, hi = crop_scale
    if (problem := crop_scale_problem(lo, hi)) is not None:
        raise ValueError(problem)
    return v2.Compose([
        v2.RandomResizedCrop(image_size, scale=(lo, hi), antialias=True),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([v2.GaussianBlur(blur_kernel_size(image_size), sigma=blur_sigma(image_size))], p=0.5),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def finetune_transform(image_size: int) -> v2.Compose:
    """One random view for supervised fine-tuning: torchvision's standard ImageNet training
    augmentation (RandomResizedCrop at its default scale, horizontal flip), normalised as
    `eval_transform` normalises the held-out images."""
    return v2.Compose([
        v2.RandomResizedCrop(image_size, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def eval_transform(image_size: int, whole_image: bool = False) -> v2.Compose:
    """Deterministic view for frozen features: shorter side to `image_size`, centre square.

    ``whole_image=True``: the whole image resized to `image_size` x `image_size` (aspect
    ratio not kept, nothing cut), as Goyal et al. 2019's VOC07 SVM benchmark: shorter side
    to 256/224 of the size, then both sides to the size (facebookresearch/
    fair_self_supervision_benchmark ``data_input.py``: ``scale`` + ``global_resize``;
    VISSL's ``Resize(256)`` + ``Resize([224, 224])``). The first resize changes only the
    resampling, kept to match theirs.
    """
    if whole_image:
        resize = [v2.Resize(round(image_size * 256 / 224), antialias=True),
                  v2.Resize((image_size, image_size), antialias=True)]
    else:
        resize = [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose([
        *resize,
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


class TwoCropsTransform:
    """Two independent random views of one image: the query and the key."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(image), self.transform(image)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform!r})"
