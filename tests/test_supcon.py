"""SupCon (Khosla et al. 2020): both losses against a loop over anchors, Jensen's order,
the training step, and the method's settings checked before Ray."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from orchestrator.config import TrialConfig, advisories
from tests.tiny import image_folder_trial, random_image_folder
from trainables.methods.supcon import SupCon, global_supcon_loss, supcon_loss

# Five images, two views each (rows 0-4 the first views, 5-9 the second): class 1 has one
# image, so its anchors' only positive is their other view.
IMAGE_LABELS = torch.tensor([0, 0, 1, 2, 2])
LABELS = IMAGE_LABELS.repeat(2)
TEMPERATURE = 0.5


def embeddings(seed: int = 0, rows: int = 10) -> torch.Tensor:
    return F.normalize(torch.randn(rows, 8, generator=torch.Generator().manual_seed(seed)), dim=1)


def loop_loss(z: torch.Tensor, labels: torch.Tensor, tau: float, variant: str, anchors=None) -> float:
    """SupCon Eq. 2 ("out") or Eq. 3 ("in"), one anchor at a time, averaged over anchors."""
    total = 0.0
    anchors = range(len(z)) if anchors is None else anchors
    for i in anchors:
        others = [a for a in range(len(z)) if a != i]
        positives = [p for p in others if labels[p] == labels[i]]
        denominator = sum(math.exp(float(z[i] @ z[a]) / tau) for a in others)
        ratios = [math.exp(float(z[i] @ z[p]) / tau) / denominator for p in positives]
        if variant == "out":
            total += -sum(math.log(r) for r in ratios) / len(positives)
        else:
            total += -math.log(sum(ratios) / len(positives))
    return total / len(anchors)


@pytest.mark.parametrize("variant", ["out", "in"])
def test_supcon_loss_equals_the_papers_equation_computed_anchor_by_anchor(variant):
    z = embeddings()
    expected = loop_loss(z, LABELS, TEMPERATURE, variant)
    assert supcon_loss(z, LABELS, TEMPERATURE, variant).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("variant", ["out", "in"])
def test_a_subset_of_anchors_is_contrasted_with_every_row(variant):
    """One worker's anchors (rows 1, 3, 6, 8) against the gathered global batch."""
    z, anchors = embeddings(), [1, 3, 6, 8]
    expected = loop_loss(z, LABELS, TEMPERATURE, variant, anchors)
    got = supcon_loss(z, LABELS, TEMPERATURE, variant, anchor_index=torch.tensor(anchors))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_the_variants_differ_and_l_out_bounds_l_in_from_above():
    for seed in range(5):
        z = embeddings(seed)
        out, inside = (supcon_loss(z, LABELS, TEMPERATURE, v).item() for v in ("out", "in"))
        # -log is convex: the mean of -log over P(i) is at least -log of the mean (Jensen).
        assert out >= inside
        # Equal only when every anchor's positives score alike, which random embeddings do not.
        assert out - inside > 1e-3


def test_with_one_positive_per_anchor_the_variants_agree():
    """With every image its own class, P(i) is the other view alone: Eq. 2 = Eq. 3."""
    labels = torch.arange(5).repeat(2)
    z = embeddings(1)
    assert supcon_loss(z, labels, TEMPERATURE, "out").item() == pytest.approx(
        supcon_loss(z, labels, TEMPERATURE, "in").item(), rel=1e-6)


def test_an_anchor_without_a_positive_and_an_unknown_variant_are_refused():
    with pytest.raises(ValueError, match="no positive"):
        supcon_loss(embeddings()[:5], IMAGE_LABELS, TEMPERATURE)  # one view: class 1 alone
    with pytest.raises(ValueError, match="variant='both'"):
        supcon_loss(embeddings(), LABELS, TEMPERATURE, "both")


def test_training_step_is_the_loss_of_both_views_and_trains_the_trunk():
    method = SupCon(dim=8, temperature=TEMPERATURE)
    torch.manual_seed(0)
    model = method.build_model(TrialConfig(arch="resnet18"))
    g = torch.Generator().manual_seed(0)
    first, second = torch.randn(5, 3, 32, 32, generator=g), torch.randn(5, 3, 32, 32, generator=g)
    out = method.training_step(model, (first, second), IMAGE_LABELS)
    loss = out.loss
    z = F.normalize(model(torch.cat([first, second])), dim=1)  # train-mode BN: same batch, same output
    torch.testing.assert_close(loss, supcon_loss(z, LABELS, TEMPERATURE, "out"))
    torch.testing.assert_close(out.metrics["positive_similarity"], (z[:5] * z[5:]).sum(1).mean().detach())
    loss.backward()
    assert all(p.grad is not None for p in method.backbone(model).parameters())


def test_method_supcon_passes_the_checks_and_a_bad_variant_is_named():
    for changes in ({"method": "supcon"}, {"method": "supcon", "method.variant": "in"}):
        trial = TrialConfig().override(changes)
        assert isinstance(trial.method, SupCon) and trial.problems() == [] and advisories(trial) == []
    assert TrialConfig().override({"method": "supcon", "method.variant": "in"}).method.variant == "in"
    (problem,) = TrialConfig().override({"method": "supcon", "method.variant": "both"}).problems()
    assert problem.startswith("method.variant='both' is not a SupCon loss: 'out'")
    assert TrialConfig().override({"method": "supcon", "method.temperature": 0}).problems() == [
        "method.temperature=0.0 must be positive"]


def test_the_loaders_batches_give_a_finite_loss_with_gradients(tmp_path):
    from trainables.pretrain import build_model, pretrain_loader

    trial = image_folder_trial(random_image_folder(tmp_path), method="supcon", **{"method.dim": 8})
    assert trial.problems() == []
    (first, second), labels, skipped = next(iter(pretrain_loader(trial, world_size=1, rank=0, loader_workers=0)))
    assert first.shape == second.shape == (4, 3, 32, 32) and skipped.sum() == 0
    model = build_model(trial)
    loss = trial.method.training_step(model, (first, second), labels).loss
    loss.backward()
    assert torch.isfinite(loss) and model.backbone.conv1.weight.grad.abs().sum() > 0


def _rank_loss(rank: int, world_size: int, store: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        z = embeddings(0, 12)
        half = slice(3 * rank, 3 * rank + 3)  # each rank holds 3 of 6 images, both views
        z1, z2 = z[:6][half].clone().requires_grad_(), z[6:12][half].clone().requires_grad_()
        loss = global_supcon_loss(z1, z2, SIX_LABELS[half], TEMPERATURE, "out")
        (loss / world_size).backward()  # DDP's mean over ranks
        torch.save({"loss": loss.detach(), "grad1": z1.grad, "grad2": z2.grad}, f"{out_dir}/rank{rank}.pt")
    finally:
        # Every rank's collectives done before teardown: a rank that destroyed its group
        # while the other was still in one aborted it (SIGABRT, seen once in CI).
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


SIX_LABELS = torch.tensor([0, 1, 0, 2, 1, 1])


def test_two_ranks_contrast_against_the_global_batch_as_one_worker_would(tmp_path):
    torch.multiprocessing.spawn(_rank_loss, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    z = embeddings(0, 12)
    z1, z2 = z[:6].clone().requires_grad_(), z[6:12].clone().requires_grad_()
    loss = global_supcon_loss(z1, z2, SIX_LABELS, TEMPERATURE, "out")  # one worker, all 6 images
    loss.backward()
    # Positives and negatives span both ranks (class 2 sits on rank 1 alone, classes 0 and 1
    # on both): the mean of the ranks' losses is the loss, the gradients the one-worker ones.
    assert ((ranks[0]["loss"] + ranks[1]["loss"]) / 2).item() == pytest.approx(loss.item(), rel=1e-5)
    torch.testing.assert_close(torch.cat([ranks[0]["grad1"], ranks[1]["grad1"]]), z1.grad)
    torch.testing.assert_close(torch.cat([ranks[0]["grad2"], ranks[1]["grad2"]]), z2.grad)
