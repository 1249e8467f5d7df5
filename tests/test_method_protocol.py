"""What the Train loop asks of a method beyond its loss: per-step metrics (``StepOutput``),
averaged over the epoch's images and reported as ``pretrain/<name>``."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.methods.base import StepOutput, step_output
from trainables.pretrain import add_weighted, device_settings, epoch_means, train_step


def test_a_bare_loss_is_a_step_without_metrics_and_loop_names_are_refused():
    loss = torch.tensor(1.5)
    assert step_output(loss) == StepOutput(loss, {})
    out = StepOutput(loss, {"positive_similarity": torch.tensor(0.3)})
    assert step_output(out) is out
    with pytest.raises(ValueError, match="'loss' clashes with the loop's own pretrain/loss"):
        step_output(StepOutput(loss, {"loss": loss}))


def test_the_epoch_reports_each_metric_averaged_over_images():
    sums: dict[str, torch.Tensor] = {}
    # Three batches of 4, 4 and 2 images (the last lost two to corrupt files).
    for value, similarity, n in ((2.0, 0.1, 4), (1.0, 0.4, 4), (4.0, 0.7, 2)):
        add_weighted(sums, {"loss": torch.tensor(value, requires_grad=True),
                            "positive_similarity": torch.tensor(similarity, dtype=torch.float16)}, n)
    assert all(s.dtype == torch.float64 and not s.requires_grad for s in sums.values())
    means = epoch_means(sums, 10)
    assert means == pytest.approx({"pretrain/loss": (2 * 4 + 1 * 4 + 4 * 2) / 10,
                                   "pretrain/positive_similarity": (0.1 * 4 + 0.4 * 4 + 0.7 * 2) / 10}, abs=1e-3)
    assert epoch_means({}, 0) == {}


class _Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(2.0))


class _ReportsScale:
    def training_step(self, model, inputs, labels):
        return StepOutput((model.w * inputs).pow(2).mean(), {"scale": model.w.detach().clone()})


def test_train_step_returns_the_methods_metrics_after_stepping():
    model = _Scaled()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    out = train_step(_ReportsScale(), model, optimizer, scaler, torch.ones(3), None, "cpu", device_settings("cpu"))
    # loss = w^2, gradient 2w = 4: w moves from 2 to 1.6; the metric is the w of the forward.
    assert out.loss.item() == 4.0 and out.metrics["scale"].item() == 2.0
    assert model.w.item() == pytest.approx(1.6)
