"""Adversarial contrastive examples (CLAE): the FGSM step, MoCo's and SimCLR's combined loss
against explicit computations, weight 0 as the plain method, the settings' checks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from orchestrator.config import ConfigError, TrialConfig, check
from trainables.adversarial import combined_loss, fgsm_view
from trainables.augment import IMAGENET_MEAN, IMAGENET_STD
from trainables.losses import info_nce
from trainables.methods.simclr import global_nt_xent
from trainables.moco import MoCo

STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)


def normalised_images(seed: int, n: int = 4, size: int = 32, low: float = 0.2, high: float = 0.8) -> torch.Tensor:
    """ImageNet-normalised images whose pixels lie in [low, high] (a small step stays in [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    pixels = low + (high - low) * torch.rand(n, 3, size, size, generator=g)
    return (pixels - MEAN) / STD


def explicit_fgsm(loss_of, x: torch.Tensor, epsilon: float) -> torch.Tensor:
    """x + epsilon * sign(grad) in pixel units, the gradient of loss_of(x) by torch.autograd."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_of(x), x)
    pixels = (x.detach() * STD + MEAN + epsilon * grad.sign()).clamp(0, 1)
    return (pixels - MEAN) / STD


def tiny_encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def test_fgsm_step_is_epsilon_times_the_sign_of_the_input_gradient_in_pixel_units():
    encoder, x = tiny_encoder(), normalised_images(0, n=3, size=8)
    target = F.normalize(torch.randn(3, 5, generator=torch.Generator().manual_seed(1)), dim=1)

    def loss_of(view):
        return -(F.normalize(encoder(view), dim=1) * target).sum(1).mean()

    view = x.clone().requires_grad_(True)
    loss = loss_of(view)
    adversarial = fgsm_view(loss, view, epsilon=0.01)
    fresh = x.clone().requires_grad_(True)  # the gradient computed apart, by torch.autograd
    (grad,) = torch.autograd.grad(loss_of(fresh), fresh)
    assert (grad != 0).float().mean() > 0.5  # the test sees real steps, not zeros
    # In pixels the step is exactly +-epsilon wherever the gradient is non-zero.
    torch.testing.assert_close((adversarial - x) * STD, 0.01 * grad.sign(), atol=1e-6, rtol=0)
    assert not adversarial.requires_grad and view.grad is None  # detached; no parameter or input .grad written
    assert all(p.grad is None for p in encoder.parameters())
    loss.backward()  # the loss's graph is kept for the step's own backward
    # The perturbed image stays in the pixel range: a white pixel pushed up stays white.
    white = ((1.0 - MEAN) / STD).expand(1, 3, 8, 8).clone().requires_grad_(True)
    clamped = fgsm_view(white.sum(), white, epsilon=0.1)
    torch.testing.assert_close(clamped, white.detach())


def test_the_fgsm_view_raises_the_loss_to_first_order():
    encoder, x = tiny_encoder(), normalised_images(2, n=3, size=8)
    target = F.normalize(torch.randn(3, 5, generator=torch.Generator().manual_seed(3)), dim=1)

    def loss_of(view):
        return -(F.normalize(encoder(view), dim=1) * target).sum(1).mean()

    view = x.clone().requires_grad_(True)
    loss = loss_of(view)
    for epsilon in (1e-4, 1e-3):
        assert loss_of(fgsm_view(loss, view, epsilon)) > loss
    assert torch.equal(loss_of(fgsm_view(loss, view, 0.0)), loss)


def test_combined_loss_is_the_convex_weighting():
    clean, adversarial = torch.tensor(2.0), torch.tensor(3.0)
    assert combined_loss(clean, adversarial, 0.25).item() == pytest.approx(0.75 * 2.0 + 0.25 * 3.0)
    assert torch.equal(combined_loss(clean, adversarial, 0.0), clean)
    assert torch.equal(combined_loss(clean, adversarial, 1.0), adversarial)


def tiny_moco(**kwargs) -> MoCo:
    torch.manual_seed(0)
    return MoCo("resnet18", dim=16, queue_size=16, momentum=0.9, temperature=0.2, **kwargs)


def test_moco_adversarial_queries_meet_the_same_keys_and_queue_and_update_them_once():
    weight, epsilon = 0.3, 1e-3
    model, plain = tiny_moco(adversarial_weight=weight, adversarial_epsilon=epsilon), tiny_moco()
    queue_before = model.queue.clone()
    im_q, im_k = normalised_images(4), normalised_images(5)
    out, plain_out = model(im_q, im_k), plain(im_q, im_k)
    # One momentum update and one enqueue, as the plain method: same keys, queue, pointer, key encoder.
    torch.testing.assert_close(out.keys, plain_out.keys, rtol=0, atol=0)
    assert torch.equal(model.queue, plain.queue) and model.queue_ptr.item() == plain.queue_ptr.item() == 4
    assert all(torch.equal(a, b) for a, b in zip(model.encoder_k.state_dict().values(),
                                                  plain.encoder_k.state_dict().values()))
    torch.testing.assert_close(out.logits, plain_out.logits, rtol=0, atol=0)  # the clean queries'

    # Explicitly: InfoNCE (MoCo Eq. 1) of the queries and of their FGSM versions against the same keys and queue.
    def clean_loss(view):
        return info_nce(F.normalize(model.encoder_q(view), dim=1), out.keys, queue_before, 0.2)[0]

    clean = clean_loss(im_q)
    adversarial = clean_loss(explicit_fgsm(clean_loss, im_q, epsilon))
    torch.testing.assert_close(out.adversarial_loss, adversarial)
    torch.testing.assert_close(out.loss, (1 - weight) * clean + weight * adversarial)
    assert out.adversarial_loss > clean  # the perturbation raised the loss (first order, small epsilon)
    out.loss.backward()
    assert all(p.grad is not None for p in model.encoder_q.parameters())
    assert all(p.grad is None for p in model.encoder_k.parameters())


def simclr_trial(**settings) -> TrialConfig:
    return TrialConfig().override({"method": "simclr", "method.dim": 8, "method.temperature": 0.2}
                                  | {f"method.{k}": v for k, v in settings.items()})


def test_simclr_adversarial_view_replaces_the_first_view_in_a_second_nt_xent_batch():
    weight, epsilon = 0.5, 1e-3
    trial = simclr_trial(adversarial_weight=weight, adversarial_epsilon=epsilon)
    torch.manual_seed(0)
    model = trial.method.build_model(trial)
    x1, x2 = normalised_images(6), normalised_images(7)
    out = trial.method.training_step(model, (x1, x2), torch.zeros(4))

    def clean_loss(view):  # train-mode BN: the same batch gives the same outputs again
        return global_nt_xent(*model(view, x2), 0.2)

    clean = clean_loss(x1)
    adversarial = clean_loss(explicit_fgsm(clean_loss, x1, epsilon))  # (x1_adv, x2) as one batch again
    torch.testing.assert_close(out.metrics["adversarial_loss"], adversarial)
    torch.testing.assert_close(out.loss, (1 - weight) * clean + weight * adversarial)
    assert adversarial > clean
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_weight_zero_is_the_plain_method_bit_for_bit():
    x1, x2 = normalised_images(8), normalised_images(9)
    # MoCo: no second forward (the query encoder's BN statistics are the plain step's), no metric.
    off, plain = tiny_moco(adversarial_weight=0.0, adversarial_epsilon=0.5), tiny_moco()
    off_out, plain_out = off(x1, x2), plain(x1, x2)
    off_out.loss.backward(), plain_out.loss.backward()
    assert torch.equal(off_out.loss, plain_out.loss) and off_out.adversarial_loss is None
    assert all(torch.equal(a, b) for a, b in zip(off.state_dict().values(), plain.state_dict().values()))
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(off.encoder_q.parameters(), plain.encoder_q.parameters()))
    # SimCLR and MoCo v2 through the method's step: the same loss, gradients and metric names.
    for name in ("simclr", "mocov2"):
        outs, grads = [], []
        for settings in ({}, {"method.adversarial_weight": 0.0, "method.adversarial_epsilon": 0.5}):
            trial = TrialConfig().override({"method": name, "method.dim": 8}
                                           | ({"method.queue_size": 16} if name == "mocov2" else {}) | settings)
            torch.manual_seed(0)
            model = trial.method.build_model(trial)
            outs.append(trial.method.training_step(model, (x1, x2), torch.zeros(4)))
            outs[-1].loss.backward()
            grads.append([p.grad for p in model.parameters() if p.grad is not None])
        assert torch.equal(outs[0].loss, outs[1].loss) and set(outs[1].metrics) == {"positive_similarity"}
        assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


def test_on_the_option_reports_the_adversarial_loss_per_step():
    trial = TrialConfig().override({"method": "mocov2", "method.dim": 8, "method.queue_size": 16,
                                    "method.adversarial_weight": 0.5})
    torch.manual_seed(0)
    out = trial.method.training_step(trial.method.build_model(trial), (normalised_images(1), normalised_images(2)),
                                     torch.zeros(4))
    assert set(out.metrics) == {"positive_similarity", "adversarial_loss"}
    assert out.metrics["adversarial_loss"].ndim == 0 and not out.metrics["adversarial_loss"].requires_grad


@pytest.mark.parametrize("name", ["mocov2", "simclr"])
def test_bad_adversarial_settings_are_refused_before_ray(name):
    assert TrialConfig().override({"method": name, "method.adversarial_weight": 1.0,
                                   "method.adversarial_epsilon": 0.0}).problems() == []
    with pytest.raises(ConfigError, match=r"method.adversarial_weight=1.5 must be in \[0, 1\]"):
        check([TrialConfig().override({"method": name, "method.adversarial_weight": 1.5})])
    with pytest.raises(ConfigError, match="method.adversarial_weight=-0.1 must be in"):
        check([TrialConfig().override({"method": name, "method.adversarial_weight": -0.1})])
    with pytest.raises(ConfigError, match="method.adversarial_epsilon=-0.01 must be at least 0"):
        check([TrialConfig().override({"method": name, "method.adversarial_epsilon": -0.01})])


def test_moco_refuses_bad_adversarial_settings_and_the_region_methods_refuse_the_option():
    with pytest.raises(ValueError, match="adversarial_epsilon=nan must be at least 0"):
        MoCo("resnet18", dim=8, queue_size=8, adversarial_epsilon=float("nan"))
    with pytest.raises(ConfigError, match="region_tracker has no adversarial contrastive examples"):
        check([TrialConfig().override({"method": "region_tracker", "method.adversarial_weight": 0.5})])
    assert TrialConfig().override({"method": "fti", "method.adversarial_weight": 0.5}).problems() == []
