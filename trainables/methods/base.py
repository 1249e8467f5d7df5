"""Methods: how a backbone is pretrained. One file per method, on this base (solo-learn's shape).

The Ray Train loop (``trainables.pretrain``) knows no method by name. It asks the trial's
method for:

- ``roles``: the data roles it reads, with their layouts;
- ``build_model(trial)``: the module DDP wraps (initial weights drawn from torch's RNG,
  which the loop seeds);
- ``train_dataset(roots, trial)``: a dataset whose items are ``(inputs, label)`` (``None``
  for an unreadable file: the loop replaces it and counts it);
- ``training_step(model, inputs, labels)``: the loss of one batch, as a bare tensor or a
  :class:`StepOutput` with per-step metrics the loop averages over each epoch and reports
  as ``pretrain/<name>`` (``model`` is the DDP-wrapped module, so gradients synchronise;
  ``labels`` are the dataset's, which self-supervised methods ignore);
- ``parameter_groups(model, trial)``: what the optimiser (the trial's ``optimizer``)
  steps, as torch parameter groups (default: every trainable parameter, one group);
- ``on_step_end(model, step, total_steps)``: a per-step hook (e.g. a momentum schedule);
- ``backbone(model)``: the trunk whose frozen features evaluation scores;
- ``data_warnings(num_images, where)``: settings that run but hurt with this much data;
- ``prepare(trial)``: build or reuse the cached data the method trains on (e.g. the
  video methods' region features and tracks) and return its figures as metrics; called on
  the driver before any trial starts, and again by the trial when it reports.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from torch import Tensor, nn
from torch.utils.data import Dataset

from datasets.registry import Part, Registry
from datasets.sources.base import DataRole
from trainables.optim import trainable_parameters


# What the Train loop reports itself (``pretrain/<name>``): a method's metric may not take these names.
LOOP_METRICS = ("loss", "images_per_second", "skipped_images")


class StepOutput(NamedTuple):
    """One training step's result: the loss to minimise and metrics to report.

    Each metric is a scalar tensor (it stays on the device), averaged over the epoch's
    images like the loss and reported as ``pretrain/<name>``; it is read after the
    optimiser step, so a metric that aliases a parameter (``w.detach()``) must be a copy.
    Every step of every rank reports the same names.
    """

    loss: Tensor
    metrics: dict[str, Tensor]


def step_output(result: Tensor | StepOutput) -> StepOutput:
    """`training_step`'s result as a StepOutput (a bare loss has no metrics)."""
    if isinstance(result, StepOutput):
        if clash := sorted(set(result.metrics) & set(LOOP_METRICS)):
            raise ValueError(f"step metric {clash[0]!r} clashes with the loop's own pretrain/{clash[0]}")
        return result
    return StepOutput(result, {})


@dataclass(frozen=True)
class Method(Part):
    """A registered pretraining method. Its fields are the ``method.*`` settings."""

    roles: ClassVar[dict[str, DataRole]] = {}

    def build_model(self, trial: Any) -> nn.Module:
        raise NotImplementedError

    def train_dataset(self, roots: dict[str, Path], trial: Any) -> Dataset:
        raise NotImplementedError

    def training_step(self, model: nn.Module, inputs: Any, labels: Tensor) -> Tensor | StepOutput:
        raise NotImplementedError

    def parameter_groups(self, model: nn.Module, trial: Any) -> list[dict]:
        """The optimiser's parameter groups of `model` (the unwrapped module); one group of
        every trainable parameter by default. ``trainables.optim.exclude_bias_and_norm``
        gives the SimCLR/BYOL convention."""
        return trainable_parameters(model)

    def on_step_end(self, model: nn.Module, step: int, total_steps: int) -> None:
        """Called after every optimiser step (``step`` counts from 1); nothing by default."""

    def backbone(self, model: nn.Module) -> nn.Module:
        return model.backbone

    def data_warnings(self, num_images: int, where: str) -> list[str]:
        return []

    def prepare(self, trial: Any) -> dict[str, float]:
        """Nothing to prepare by default."""
        return {}


METHODS: Registry[type[Method]] = Registry("method", Method, package=__package__)
