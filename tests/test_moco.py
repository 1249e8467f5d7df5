"""MoCo v2: loss, gradients, momentum update, queue (one and two workers), checkpoints."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainables.augment import TwoCropsTransform, blur_kernel_size, eval_transform, mocov2_transform
from trainables.losses import info_nce
from trainables.config import TrialConfig
from trainables.moco import MoCo, moco_problems, queue_overlap_warning

DIM, QUEUE, BATCH, SIZE = 16, 16, 4, 32


def tiny_moco(seed: int = 0, **kwargs) -> MoCo:
    torch.manual_seed(seed)
    return MoCo("resnet18", dim=DIM, queue_size=kwargs.pop("queue_size", QUEUE), momentum=0.9,
                temperature=0.2, **kwargs)


def images(seed: int, n: int = BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, SIZE, SIZE, generator=g), torch.randn(n, 3, SIZE, SIZE, generator=g)


def test_info_nce_equals_explicit_computation():
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(5, 8, generator=g), dim=1)
    k = F.normalize(torch.randn(5, 8, generator=g), dim=1)
    queue = F.normalize(torch.randn(8, 12, generator=g), dim=0)
    t = 0.07
    loss, logits = info_nce(q, k, queue, t)

    expected_losses = []
    for i in range(5):
        pos = math.exp(float(q[i] @ k[i]) / t)
        neg = sum(math.exp(float(q[i] @ queue[:, j]) / t) for j in range(12))
        expected_losses.append(-math.log(pos / (pos + neg)))
    assert loss.item() == pytest.approx(sum(expected_losses) / 5, rel=1e-5)
    assert logits.shape == (5, 13)
    torch.testing.assert_close(logits[:, 0], (q * k).sum(1) / t)
    torch.testing.assert_close(logits[:, 1:], q @ queue / t)


def test_forward_loss_is_info_nce_of_query_key_and_previous_queue():
    model = tiny_moco()
    queue_before = model.queue.clone()
    im_q, im_k = images(1)
    out = model(im_q, im_k)
    # Train-mode BN on the same batch gives the same outputs again.
    q = F.normalize(model.encoder_q(im_q), dim=1)
    k = F.normalize(model.encoder_k(im_k), dim=1)
    torch.testing.assert_close(out.keys, k)
    expected_loss, expected_logits = info_nce(q, k, queue_before, 0.2)
    torch.testing.assert_close(out.logits, expected_logits)
    torch.testing.assert_close(out.loss, expected_loss)


def test_only_query_encoder_gets_gradients_and_key_encoder_follows_momentum():
    from trainables.pretrain import build_optimizer  # imported here: the spawned workers skip Ray's import

    model = tiny_moco()
    optimizer, _ = build_optimizer(model, TrialConfig(lr=0.5, momentum=0.9, weight_decay=1e-4,
                                                      cosine_schedule=False, epochs=1))
    for step in range(2):
        q_before = [p.detach().clone() for p in model.encoder_q.parameters()]
        k_before = [p.detach().clone() for p in model.encoder_k.parameters()]
        out = model(*images(step))
        k_after_forward = [p.detach().clone() for p in model.encoder_k.parameters()]
        for kb, qb, ka in zip(k_before, q_before, k_after_forward):
            torch.testing.assert_close(ka, kb * 0.9 + qb * (1.0 - 0.9), rtol=0, atol=0)

        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        assert all(p.grad is not None for p in model.encoder_q.parameters())
        assert any(p.grad.abs().sum() > 0 for p in model.encoder_q.head.parameters())
        assert all(p.grad is None and not p.requires_grad for p in model.encoder_k.parameters())
        optimizer.step()
        # The optimizer moved the query encoder and left the key encoder alone.
        assert any(not torch.equal(a, b) for a, b in zip(q_before, model.encoder_q.parameters()))
        for ka, p in zip(k_after_forward, model.encoder_k.parameters()):
            assert torch.equal(ka, p)
    # After two steps the key encoder differs from the query encoder (m < 1, q moved).
    assert any(not torch.equal(a, b) for a, b in zip(model.encoder_q.parameters(), model.encoder_k.parameters()))


def test_queue_is_a_ring_buffer_of_the_newest_keys():
    model = tiny_moco()
    keys = []
    with torch.no_grad():
        for step in range(6):  # 6 batches of 4 into a queue of 16: wraps around once
            keys.append(model(*images(step)).keys)
    assert int(model.queue_ptr) == (6 * BATCH) % QUEUE
    # Slots 0-3 hold batch 4, 4-7 batch 5, 8-11 batch 2, 12-15 batch 3.
    for step, slot in [(4, 0), (5, 1), (2, 2), (3, 3)]:
        torch.testing.assert_close(model.queue[:, slot * BATCH:(slot + 1) * BATCH], keys[step].T, rtol=0, atol=0)
    torch.testing.assert_close(model.queue.norm(dim=0), torch.ones(QUEUE))


def test_two_crops_are_independent_views_and_eval_view_is_deterministic():
    image = torch.randint(0, 256, (3, 48, 40), dtype=torch.uint8)
    q, k = TwoCropsTransform(mocov2_transform(SIZE, (0.2, 1.0)))(image)
    assert q.shape == k.shape == (3, SIZE, SIZE) and q.dtype == torch.float32
    assert not torch.equal(q, k)
    view = eval_transform(SIZE)(image)
    assert view.shape == (3, SIZE, SIZE) and torch.equal(view, eval_transform(SIZE)(image))
    assert (blur_kernel_size(224), blur_kernel_size(64), blur_kernel_size(32)) == (23, 7, 3)  # MoCo v2: 23 at 224
    with pytest.raises(ValueError, match="crop_scale_min=0.8 is larger than crop_scale_max=0.2"):
        mocov2_transform(SIZE, (0.8, 0.2))


def test_moco_rules_live_in_one_place_and_name_the_method_keys():
    assert moco_problems(128, 4096, 0.99, 0.2, global_batch=64) == []
    assert moco_problems(128, 100, 0.99, 0.2, global_batch=64) == [
        "queue_size=100 must be a multiple of the global batch_size=64 (each step enqueues the whole global batch)"]
    assert moco_problems(128, 256, 1.0, 0.2) == ["momentum=1.0 must be in [0, 1)"]  # m = 1 never learns keys
    assert moco_problems(0, 0, -0.1, 0.0) == ["dim=0 must be at least 1", "queue_size=0 must be at least 1",
                                              "momentum=-0.1 must be in [0, 1)", "temperature=0.0 must be positive"]
    with pytest.raises(ValueError, match=r"momentum=1.0 must be in \[0, 1\)"):
        MoCo(momentum=1.0)
    # The method part reports the same sentences under its dotted keys.
    trial = TrialConfig().override({"method.queue_size": 100, "method.crop_scale_min": 0.9, "method.crop_scale_max": 0.5})
    assert trial.problems() == [
        "method.queue_size=100 must be a multiple of the global batch_size=64 (each step enqueues the whole global batch)",
        "method.crop_scale_min=0.9 is larger than crop_scale_max=0.5"]
    assert [p for p in TrialConfig().override({"method.crop_scale_min": 0}).problems()] == [
        "method.crop_scale_min=0.0 is outside (0, 1]: it is a fraction of the image area"]


def test_checkpoint_round_trip_restores_queue_pointer_and_optimizer(tmp_path):
    from trainables.pretrain import build_optimizer, load_checkpoint, save_checkpoint

    config = TrialConfig(lr=0.1, momentum=0.9, weight_decay=1e-4, cosine_schedule=True, epochs=3)
    model = tiny_moco(seed=0)
    optimizer, scheduler = build_optimizer(model, config)
    for step in range(3):
        out = model(*images(step))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    scheduler.step()
    save_checkpoint(tmp_path / "checkpoint.pt", model, optimizer, scheduler, epoch=0)

    restored = tiny_moco(seed=1)
    restored_optimizer, restored_scheduler = build_optimizer(restored, config)
    assert not torch.equal(restored.queue, model.queue)
    assert load_checkpoint(tmp_path / "checkpoint.pt", restored, restored_optimizer, restored_scheduler) == 0
    assert torch.equal(restored.queue, model.queue)
    assert torch.equal(restored.queue_ptr, model.queue_ptr) and int(restored.queue_ptr) == 3 * BATCH % QUEUE
    for (name, a), (_, b) in zip(model.state_dict().items(), restored.state_dict().items()):
        assert torch.equal(a, b), name
    assert restored_scheduler.get_last_lr() == scheduler.get_last_lr()
    momentum_buffers = [s["momentum_buffer"] for s in optimizer.state.values()]
    restored_buffers = [s["momentum_buffer"] for s in restored_optimizer.state.values()]
    assert len(momentum_buffers) == len(restored_buffers) > 0
    assert all(torch.equal(a, b) for a, b in zip(momentum_buffers, restored_buffers))


def test_checkpoint_keeps_the_loss_scaler(tmp_path):
    from trainables.pretrain import build_optimizer, load_checkpoint, save_checkpoint

    config = TrialConfig(epochs=3)
    model = tiny_moco(seed=0)
    optimizer, scheduler = build_optimizer(model, config)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    scaler.scale(torch.ones(()))  # (initialises the scale)
    scaler.update(new_scale=1024.0)  # as after some overflowing steps
    save_checkpoint(tmp_path / "checkpoint.pt", model, optimizer, scheduler, epoch=1, scaler=scaler)
    restored = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    assert load_checkpoint(tmp_path / "checkpoint.pt", model, optimizer, scheduler, restored) == 1
    assert restored.get_scale() == 1024.0
    # A checkpoint without a scaler (saved without one, or by an older version) still loads.
    save_checkpoint(tmp_path / "plain.pt", model, optimizer, scheduler, epoch=0)
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    assert load_checkpoint(tmp_path / "plain.pt", model, optimizer, scheduler, fresh) == 0
    assert fresh.get_scale() == 2.0**16


def _two_worker_steps(rank: int, world_size: int, store: str, out_dir: str) -> None:
    """One DDP rank: two MoCo steps on rank-specific images; save what it saw."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        # Same initial weights and queue on both ranks; two BN sub-batches per rank, so the
        # groups are checked composed with the shuffle across ranks.
        model = tiny_moco(seed=0, shuffle_bn_groups=2)
        # Eval-mode BN makes each key independent of its batch-mates, so after both shuffles
        # the keys must come back to the rank and position of their image.
        model.encoder_k.eval()
        record = {"keys": [], "expected_keys": [], "queues": [], "ptrs": [], "shuffled": []}
        with torch.no_grad():
            for step in range(2):
                im_q, im_k = images(100 * step + rank)
                # What this rank's key encoder is given inside the forward (one call per group).
                seen = []
                hook = model.encoder_k.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
                out = model(im_q, im_k)
                hook.remove()
                record["shuffled"].append(torch.cat(seen))
                record["groups"] = [len(x) for x in seen]
                record["keys"].append(out.keys)
                record["expected_keys"].append(F.normalize(model.encoder_k(im_k), dim=1))
                record["queues"].append(model.queue.clone())
                record["ptrs"].append(int(model.queue_ptr))
        torch.save(record, f"{out_dir}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_two_workers_enqueue_the_global_batch_in_rank_order(tmp_path):
    torch.multiprocessing.spawn(_two_worker_steps, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for step in range(2):
        torch.testing.assert_close(r0["keys"][step], r0["expected_keys"][step])
        torch.testing.assert_close(r1["keys"][step], r1["expected_keys"][step])
        assert torch.equal(r0["queues"][step], r1["queues"][step])
        assert r0["ptrs"][step] == r1["ptrs"][step] == (step + 1) * 2 * BATCH % QUEUE
        start = step * 2 * BATCH
        global_keys = torch.cat([r0["keys"][step], r1["keys"][step]])  # rank 0 first
        torch.testing.assert_close(r0["queues"][step][:, start:start + 2 * BATCH], global_keys.T)
    # Shuffle-BN really shuffles across ranks: rank 0's key encoder saw some of rank 1's key
    # images (normalised together with its own), and every image of the global batch once,
    # in sub-batches of 2.
    assert r0["groups"] == r1["groups"] == [BATCH // 2, BATCH // 2]
    received = 0
    for step in range(2):
        own = {tuple(x.flatten().tolist()) for x in images(100 * step)[1]}
        other = {tuple(x.flatten().tolist()) for x in images(100 * step + 1)[1]}
        seen0 = [tuple(x.flatten().tolist()) for x in r0["shuffled"][step]]
        seen1 = [tuple(x.flatten().tolist()) for x in r1["shuffled"][step]]
        assert sorted(seen0 + seen1) == sorted(own | other)
        received += sum(x in other for x in seen0)
    assert received >= 1


def test_queue_overlap_warning_names_the_data_and_fires_from_k_equal_to_n():
    assert queue_overlap_warning(255, 256, "/data/x") is None
    message = queue_overlap_warning(256, 256, "/data/x/train")
    assert message.startswith("/data/x/train: method.queue_size=256") and "256 pretraining images" in message


def test_the_augmentation_has_moco_v2_s_parameters_at_any_size():
    from torchvision.transforms import v2

    for size, kernel, sigma in ((224, 23, (0.1, 2.0)), (64, 7, (0.1 * 64 / 224, 2.0 * 64 / 224))):
        crop, jitter, gray, blur, flip, to_float, normalize = mocov2_transform(size, (0.2, 1.0)).transforms
        assert isinstance(crop, v2.RandomResizedCrop) and crop.size == (size, size) and crop.scale == (0.2, 1.0)
        assert isinstance(jitter, v2.RandomApply) and jitter.p == 0.8
        (color,) = jitter.transforms
        assert (color.brightness, color.contrast, color.saturation, color.hue) == ((0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1))
        assert isinstance(gray, v2.RandomGrayscale) and gray.p == 0.2
        assert isinstance(blur, v2.RandomApply) and blur.p == 0.5
        (gaussian,) = blur.transforms
        assert list(gaussian.kernel_size) == [kernel, kernel]
        assert gaussian.sigma == pytest.approx(list(sigma))
        assert isinstance(flip, v2.RandomHorizontalFlip) and flip.p == 0.5
        assert isinstance(to_float, v2.ToDtype) and isinstance(normalize, v2.Normalize)
        assert (tuple(normalize.mean), tuple(normalize.std)) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_shuffle_bn_groups_normalise_a_key_over_a_random_sub_batch_on_one_worker():
    from trainables.moco import grouped_bn_forward

    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.BatchNorm1d(3 * SIZE * SIZE, affine=False)).train()
    x = torch.randn(8, 3, SIZE, SIZE)
    plain = encoder(x)
    torch.manual_seed(1)
    grouped = grouped_bn_forward(encoder, x, 4)
    torch.manual_seed(1)
    order = torch.randperm(8)
    # Each key is its image normalised with the statistics of its own random pair only.
    for chunk in order.chunk(4):
        torch.testing.assert_close(grouped[chunk], encoder(x[chunk]))
    assert not torch.allclose(grouped, plain)  # not the whole batch's statistics
    assert torch.equal(grouped_bn_forward(encoder, x, 1), plain)
    with pytest.raises(ValueError, match="shuffle_bn_groups=3 must split each worker's batch of 8 into equal"):
        grouped_bn_forward(encoder, x, 3)
    # The method checks it before any work, against each worker's batch.
    (msg,) = TrialConfig(batch_size=64, num_workers=2).override({"method.shuffle_bn_groups": 64}).problems()
    assert msg.startswith("method.shuffle_bn_groups=64 must split each worker's batch of 32")


def test_one_worker_keys_come_from_random_sub_batches_with_shuffle_bn_groups():
    model = tiny_moco(shuffle_bn_groups=2)  # a batch of 4: two random pairs
    im_q, im_k = images(3)
    torch.manual_seed(5)
    out = model(im_q, im_k)  # (train mode: BN with the statistics of the batch given)
    torch.manual_seed(5)
    order = torch.randperm(BATCH)  # the forward's draw
    with torch.no_grad():
        by_pair = torch.cat([model.encoder_k(im_k[pair]) for pair in order.chunk(2)])
        expected = F.normalize(by_pair, dim=1)[torch.argsort(order)]
        whole_batch = F.normalize(model.encoder_k(im_k), dim=1)  # as the queries are normalised
    torch.testing.assert_close(out.keys, expected)
    assert not torch.allclose(out.keys, whole_batch, atol=1e-3)
    with pytest.raises(ValueError, match="shuffle_bn_groups=2 must split each worker's batch of 3 into equal"):
        model(im_q[:3], im_k[:3])
