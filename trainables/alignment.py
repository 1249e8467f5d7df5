"""Eigenspace alignment of a first convolution's weights with the data it sees.

Maennel et al., "What Do Neural Networks Learn When Trained With Random Labels?" (NeurIPS
2020; summarised in ../shared/reference/seeds/002): treat the first layer's filters
``w_1..w_m`` (each flattened to ``d = C * k * k``) and the image patches ``x`` the layer
sees as random vectors with covariances ``Sigma_w`` and ``Sigma_x``. Pretraining, even on
random labels, makes them *aligned*: every eigenspace of ``Sigma_x`` lies in an
eigenspace of ``Sigma_w`` (they share eigenvectors; the eigenvalues may differ).

The score here (:func:`covariance_alignment`): with ``U`` the eigenvectors of ``Sigma_x``
and ``M = U^T Sigma_w U`` (``Sigma_w`` in the data's eigenbasis),
``A = sum_{i ~ j} M_ij^2 / sum_ij M_ij^2``, where ``i ~ j`` when eigenvalues ``i`` and ``j``
of ``Sigma_x`` are equal (the same eigenspace). ``A = 1`` exactly when ``Sigma_w`` maps
every eigenspace of ``Sigma_x`` into itself (the two commute), which for the distinct
eigenvalues of real patch statistics is the note's condition; smaller values put more of
``Sigma_w``'s energy across the data's principal directions. It is invariant to scaling
either matrix. An isotropic ``Sigma_w`` is aligned with everything (as the definition
says), so compare a trained layer's score with a randomly initialised one's, whose finite
sample of filters is not isotropic.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["covariance_alignment", "first_conv", "first_layer_alignment", "patch_covariance", "weight_covariance"]

# Eigenvalues of Sigma_x closer than this (relative to the largest) are one eigenspace.
EIGENVALUE_TOLERANCE = 1e-9


def weight_covariance(weight: torch.Tensor | np.ndarray) -> np.ndarray:
    """The d x d covariance of a convolution's m filters (``m x C x k x k``), each a sample."""
    filters = np.asarray(weight, dtype=np.float64).reshape(len(weight), -1)
    return np.cov(filters, rowvar=False)


def patch_covariance(images: torch.Tensor, kernel_size: int, stride: int = 1, padding: int = 0) -> np.ndarray:
    """The d x d covariance of every ``C x k x k`` patch a convolution reads from `images`
    (N x C x H x W), flattened in the order of the convolution's weight (C, then rows, then
    columns)."""
    patches = torch.nn.functional.unfold(images.double(), kernel_size, padding=padding, stride=stride)  # N x d x L
    samples = patches.transpose(1, 2).reshape(-1, patches.shape[1]).numpy()
    return np.cov(samples, rowvar=False)


def covariance_alignment(weight_cov: np.ndarray, data_cov: np.ndarray) -> float:
    """The share of ``Sigma_w``'s squared Frobenius norm within the eigenspaces of ``Sigma_x``
    (the module docstring's ``A``, in [0, 1])."""
    weight_cov, data_cov = np.asarray(weight_cov, np.float64), np.asarray(data_cov, np.float64)
    if weight_cov.shape != data_cov.shape or weight_cov.ndim != 2 or weight_cov.shape[0] != weight_cov.shape[1]:
        raise ValueError(f"two d x d covariances are needed, got {weight_cov.shape} and {data_cov.shape}")
    eigenvalues, eigenvectors = np.linalg.eigh(data_cov)
    in_basis = eigenvectors.T @ weight_cov @ eigenvectors
    total = np.sum(in_basis ** 2)
    if total == 0.0:
        raise ValueError("the weight covariance is zero: all filters are equal")
    scale = max(np.abs(eigenvalues).max(), np.finfo(np.float64).tiny)
    same_space = np.abs(eigenvalues[:, None] - eigenvalues[None, :]) <= EIGENVALUE_TOLERANCE * scale
    return float(np.sum(in_basis[same_space] ** 2) / total)


def first_conv(network: torch.nn.Module) -> torch.nn.Conv2d | None:
    """The first 2-d convolution of `network` in registration order (a ResNet's ``conv1``,
    also inside an evaluation wrapper of the trunk), or None."""
    return next((m for m in network.modules() if isinstance(m, torch.nn.Conv2d)), None)


def first_layer_alignment(network: torch.nn.Module, images: torch.Tensor) -> float:
    """:func:`covariance_alignment` of `network`'s first convolution (:func:`first_conv`, a
    ResNet trunk's ``conv1``) with the patches it reads from `images` (N x C x H x W,
    normalised as the network sees them). ValueError when `network` has no convolution."""
    conv = first_conv(network)
    if conv is None:
        raise ValueError(f"{type(network).__name__} has no convolution: no first layer to align")
    data_cov = patch_covariance(images, conv.kernel_size[0], conv.stride[0], conv.padding[0])
    return covariance_alignment(weight_covariance(conv.weight.detach().cpu()), data_cov)
