"""PIRL (Misra and van der Maaten 2020): the NCE loss against its equations term by term,
the memory bank's moving average, the jigsaw transform, the indexed items, and the
method's settings checked before Ray."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from orchestrator.config import TrialConfig, advisories
from tests.tiny import image_folder_trial, random_image_folder
from trainables.methods.pirl import (PIRL, IndexedDataset, Jigsaw, PIRLNetwork, memory_bank_update,
                                     pirl_nce)

TAU = 0.5


def unit(*shape: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def loop_nce(query, positive, negatives, tau, excluded) -> float:
    """PIRL Eq. 2-4, one query at a time, each D_N without the query's own image."""
    total = 0.0
    for b in range(len(query)):
        d_n = [n for n in range(len(negatives)) if not excluded[b][n]]
        noise = sum(math.exp(float(query[b] @ negatives[n]) / tau) for n in d_n)

        def h(m):
            return math.exp(float(query[b] @ m) / tau) / (math.exp(float(query[b] @ m) / tau) + noise)

        total += -math.log(h(positive[b])) - sum(math.log(1 - h(negatives[n])) for n in d_n)
    return total / len(query)


def test_nce_equals_the_papers_equations_computed_term_by_term():
    query, positive, negatives = unit(3, 6, seed=0), unit(3, 6, seed=1), unit(5, 6, seed=2)
    excluded = torch.zeros(3, 5, dtype=torch.bool)
    excluded[1, 2] = True  # negative 2 is query 1's own image
    expected = loop_nce(query, positive, negatives, TAU, excluded.tolist())
    assert pirl_nce(query, positive, negatives, TAU, excluded).item() == pytest.approx(expected, rel=1e-5)
    # Without the mask, negative 2 counts for query 1 too: another value.
    no_mask = loop_nce(query, positive, negatives, TAU, [[False] * 5] * 3)
    assert pirl_nce(query, positive, negatives, TAU).item() == pytest.approx(no_mask, rel=1e-5)
    assert abs(expected - no_mask) > 1e-3


def test_network_loss_mixes_the_two_heads_against_the_bank_before_its_update():
    torch.manual_seed(0)
    net = PIRLNetwork("resnet18", dim=8, num_images=6, temperature=TAU, loss_weight=0.3,
                      bank_momentum=0.5, num_negatives=6)
    bank_before = net.memory_bank.clone()
    g = torch.Generator().manual_seed(0)
    images, patches = torch.randn(2, 3, 32, 32, generator=g), torch.randn(2, 9, 3, 11, 11, generator=g)
    index = torch.tensor([4, 1])
    out = net(images, patches, index)
    # Train-mode BN: the same batches give the same outputs again. All 6 entries are drawn
    # (num_negatives = bank size), so D_N is the bank without the query's own image.
    with torch.no_grad():
        f = F.normalize(net.image_head(net.backbone(images)), dim=1)
        g_t = F.normalize(net.jigsaw_head(net.patch_head(net.backbone(patches.flatten(0, 1))).reshape(2, -1)), dim=1)
    excluded = (torch.arange(6)[None, :] == index[:, None]).tolist()
    expected = (0.3 * loop_nce(g_t, bank_before[index], bank_before, TAU, excluded)
                + 0.7 * loop_nce(f, bank_before[index], bank_before, TAU, excluded))
    assert out.loss.item() == pytest.approx(expected, rel=1e-4)
    assert out.positive_similarity.item() == pytest.approx(float((g_t * bank_before[index]).sum(1).mean()), rel=1e-4)
    # The bank moved towards f(v_I) for the batch's images only (PIRL Sec. 3.2).
    torch.testing.assert_close(net.memory_bank[index], F.normalize(0.5 * bank_before[index] + 0.5 * f.detach(), dim=1))
    untouched = [i for i in range(6) if i not in (4, 1)]
    torch.testing.assert_close(net.memory_bank[untouched], bank_before[untouched], rtol=0, atol=0)
    out.loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_memory_bank_is_a_normalised_moving_average():
    bank = unit(4, 3, seed=0)
    before = bank.clone()
    features = unit(2, 3, seed=1)
    memory_bank_update(bank, torch.tensor([3, 0]), features, momentum=0.75)
    for row, feature in ((3, features[0]), (0, features[1])):
        mixed = 0.75 * before[row] + 0.25 * feature
        torch.testing.assert_close(bank[row], mixed / mixed.norm())
    torch.testing.assert_close(bank[1:3], before[1:3], rtol=0, atol=0)


def test_jigsaw_keeps_every_pixel_and_only_permutes_the_patches():
    image = torch.arange(3 * 6 * 9).reshape(3, 6, 9)
    torch.manual_seed(0)
    patches = Jigsaw()(image)
    assert patches.shape == (9, 3, 2, 3)
    grid = [image[:, r * 2:(r + 1) * 2, c * 3:(c + 1) * 3] for r in range(3) for c in range(3)]
    order = [next(i for i, tile in enumerate(grid) if torch.equal(tile, patch)) for patch in patches]
    assert sorted(order) == list(range(9))  # each tile once: nothing lost, nothing repeated
    orders = {tuple(next(i for i, t in enumerate(grid) if torch.equal(t, p)) for p in Jigsaw()(image))
              for _ in range(5)}
    assert len(orders) > 1  # the order is drawn
    with pytest.raises(ValueError, match="does not tile"):
        Jigsaw()(torch.zeros(3, 32, 32))


def test_indexed_items_carry_their_index_and_unreadable_ones_stay_none():
    items = [((torch.zeros(1), torch.ones(1)), 7), None]
    dataset = IndexedDataset(items)
    (view, patches, index), label = dataset[0]
    assert index == 0 and label == 7 and torch.equal(patches, torch.ones(1))
    assert dataset[1] is None and len(dataset) == 2


def test_method_pirl_passes_the_checks_and_bad_settings_are_named():
    trial = TrialConfig().override({"method": "pirl"})
    assert isinstance(trial.method, PIRL) and trial.problems() == [] and advisories(trial) == []
    bad = TrialConfig().override({"method": "pirl", "method.loss_weight": 1.5, "method.num_negatives": 1})
    assert bad.problems() == ["method.loss_weight=1.5 must be in [0, 1] (lambda of PIRL Eq. 5)",
                              "method.num_negatives=1 must be at least 2 (one may be the query's own image)"]


def test_the_loaders_batches_carry_indices_and_give_a_finite_loss(tmp_path):
    from trainables.pretrain import build_model, pretrain_loader

    trial = image_folder_trial(random_image_folder(tmp_path), method="pirl", **{"method.dim": 8})
    assert trial.problems() == []
    loader = pretrain_loader(trial, world_size=1, rank=0, loader_workers=0)
    (images, patches, index), labels, skipped = next(iter(loader))
    # 32 px rounds up to a 33 px jigsaw view: nine 11 px patches.
    assert images.shape == (4, 3, 32, 32) and patches.shape == (4, 9, 3, 11, 11) and skipped.sum() == 0
    assert len(set(index.tolist())) == 4 and all(0 <= i < 8 for i in index.tolist())
    model = build_model(trial)
    assert model.memory_bank.shape == (8, 8)  # one entry per training image
    out = trial.method.training_step(model, (images, patches, index), labels)
    out.loss.backward()
    loss = out.loss
    assert -1 <= out.metrics["positive_similarity"].item() <= 1 and not out.metrics["positive_similarity"].requires_grad
    assert torch.isfinite(loss) and model.backbone.conv1.weight.grad.abs().sum() > 0
