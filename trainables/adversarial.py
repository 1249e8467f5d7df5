"""Adversarial contrastive examples: an option of the contrastive methods (MoCo v2, SimCLR).

The idea of CLAE (Ho & Vasconcelos 2020, "Contrastive Learning with Adversarial
Examples"), as the neighbouring-work notes (reference seeds, file 002) describe it: after
the ordinary forward pass of the two views p and q, compute for each image of q the
perturbation that raises the contrastive loss most, taken against the clean p; contrast the
perturbed q with the same clean p; train on a weighted combination of the clean and the
adversarial losses. Harder positives, as stronger augmentations give.

The perturbation is the Fast Gradient Sign Method (Goodfellow et al. 2015, Sec. 4):

    q_adv = q + epsilon * sign(d L_clean / d q)

one step, per image and pixel, the gradient treated as a constant (no gradient flows through
the perturbation). The combination is convex in the weight alpha (``adversarial_weight``):

    L = (1 - alpha) * L_clean + alpha * L_adv

so alpha = 0 is the plain method and alpha = 1 the adversarial loss alone, at the clean
loss's scale for any alpha (the notes say "weighted combination" without its form).

Epsilon is in pixel units (images in [0, 1]; 8/255 = eight grey levels), which the notes do
not fix; pixel units mean the same on any normalisation. The methods' inputs are
normalised with the ImageNet statistics (``trainables.augment``), so the step is
epsilon / std per channel there, and the perturbed image is clamped to the pixel range.
Under fp16 autocast the input gradient can underflow in places (sign 0: no step there);
bf16 and fp32 keep its range.
"""
from __future__ import annotations

import torch
from torch import Tensor

from trainables.augment import IMAGENET_MEAN, IMAGENET_STD


def adversarial_problems(weight: float, epsilon: float) -> list[str]:
    """Why these settings cannot train (empty: they can). Keys as in ``method.*``."""
    out = []
    if not 0.0 <= weight <= 1.0:
        out.append(f"adversarial_weight={weight} must be in [0, 1] (0: off; the loss is "
                   "(1 - weight) * clean + weight * adversarial)")
    if not epsilon >= 0.0:  # also refuses NaN
        out.append(f"adversarial_epsilon={epsilon} must be at least 0 (an FGSM step in pixel units, images in [0, 1])")
    return out


def _per_channel(values: tuple[float, ...], like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def fgsm_view(loss: Tensor, view: Tensor, epsilon: float) -> Tensor:
    """The FGSM adversarial version of `view` against `loss` (Goodfellow et al. 2015, Sec. 4).

    `view` is a batch of ImageNet-normalised images (N x 3 x H x W) that required grad when
    `loss` was computed from it. Returns ``view + epsilon * sign(d loss / d view)`` with the
    step in pixel units (``epsilon / std`` per normalised channel), clamped to the images'
    pixel range [0, 1], detached. The graph of `loss` is kept for its own backward.
    """
    (grad,) = torch.autograd.grad(loss, view, retain_graph=True)
    mean, std = _per_channel(IMAGENET_MEAN, view), _per_channel(IMAGENET_STD, view)
    stepped = view.detach() + epsilon * grad.sign() / std
    return torch.clamp(stepped, min=(0.0 - mean) / std, max=(1.0 - mean) / std)


def combined_loss(clean: Tensor, adversarial: Tensor, weight: float) -> Tensor:
    """(1 - alpha) * L_clean + alpha * L_adv, alpha = `weight` (see the module docstring)."""
    return (1.0 - weight) * clean + weight * adversarial
