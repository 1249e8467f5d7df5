"""The video methods' losses against explicit computations on tiny batches (no Ray)."""
from __future__ import annotations

import copy

import cv2
import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align
from torchvision.transforms import v2

from trainables.config import TrialConfig
from trainables.moco import MoCo
from trainables.region_moco import RegionMoCo
from trainables.video_data import FramePairs, TrackedFramePairs, augment_with_box


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def explicit_info_nce(q, k, queue, temperature):
    """-log(exp(q.k/t) / (exp(q.k/t) + sum_j exp(q.n_j/t))), averaged (Eq. 1 with the log)."""
    positives = (q * k).sum(1) / temperature
    negatives = q @ queue / temperature
    return (torch.logsumexp(torch.cat([positives[:, None], negatives], 1), 1) - positives).mean()


def explicit_region(encoder, images, boxes, size, select):
    """ROI-align on layer3 (of the whole batch), then layer4, pooling and head, written out
    with torchvision's modules, for the images in `select`."""
    net = encoder.backbone
    x = net.maxpool(net.relu(net.bn1(net.conv1(images))))
    x = net.layer3(net.layer2(net.layer1(x)))[select]
    boxes = boxes[select]
    rois = torch.cat([torch.arange(len(boxes)).float()[:, None], boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1)
    pooled = roi_align(x, rois, (size, size), spatial_scale=1 / 16, sampling_ratio=2, aligned=True)
    return F.normalize(encoder.head(torch.flatten(net.avgpool(net.layer4(pooled)), 1)), dim=1)


def tiny_batch(seed=0, n=4, size=32):
    g = torch.Generator().manual_seed(seed)
    im_q, im_k = torch.randn(n, 3, size, size, generator=g), torch.randn(n, 3, size, size, generator=g)
    box_q = torch.tensor([[4.0, 6.0, 30.0, 28.0], [0.0, 0.0, 64.0, 64.0], [10.0, 20.0, 20.0, 40.0], [33.0, 1.0, 30.0, 30.0]])
    box_k = torch.tensor([[8.0, 6.0, 28.0, 30.0], [5.0, 5.0, 50.0, 50.0], [12.0, 18.0, 22.0, 40.0], [30.0, 4.0, 30.0, 30.0]])
    return im_q, im_k, box_q[:n] * size / 64, box_k[:n] * size / 64


def test_region_tracker_loss_is_half_frame_half_region_with_a_shared_queue():
    torch.manual_seed(0)
    model = RegionMoCo(arch="resnet18", dim=16, queue_size=32, momentum=0.9, temperature=0.2, roi_size=2)
    before = copy.deepcopy(model)
    im_q, im_k, box_q, box_k = tiny_batch()
    valid = torch.tensor([True, False, True, True])
    out = model(im_q, im_k, box_q, box_k, valid)

    queue = before.queue.clone()
    q = F.normalize(before.encoder_q(im_q), dim=1)
    with torch.no_grad():  # the key encoder starts equal to the query encoder: the momentum step keeps it
        k = F.normalize(before.encoder_k(im_k), dim=1)
        # The key encoder's layer3 runs on the key frames that kept their region.
        k_region = explicit_region(before.encoder_k, im_k[valid], box_k[valid], 2, slice(None))
    q_region = explicit_region(before.encoder_q, im_q, box_q, 2, valid)
    frame = explicit_info_nce(q, k, queue, 0.2)
    region = explicit_info_nce(q_region, k_region, queue, 0.2)
    assert out.frame_loss.item() == pytest.approx(frame.item(), rel=1e-4)
    assert out.region_loss.item() == pytest.approx(region.item(), rel=1e-4)
    assert out.loss.item() == pytest.approx(0.5 * frame.item() + 0.5 * region.item(), rel=1e-4)
    # One queue: this step's frame keys, then its region keys (valid samples only). Unit
    # vectors: 1e-4 absolute is float32 noise (oneDNN's kernels vary with threads and load),
    # far below a wrong key (entries of about 0.25).
    torch.testing.assert_close(model.queue[:, :4], k.T, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(model.queue[:, 4:7], k_region.T, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(model.queue[:, 7:], queue[:, 7:])
    assert int(model.queue_ptr) == 7


def test_region_tracker_gradients_reach_the_region_branch():
    torch.manual_seed(1)
    model = RegionMoCo(arch="resnet18", dim=16, queue_size=32, roi_size=2, region_weight=1.0)  # the region loss alone
    im_q, im_k, box_q, box_k = tiny_batch(1)
    out = model(im_q, im_k, box_q, box_k, torch.ones(4, dtype=torch.bool))
    out.loss.backward()
    net = model.encoder_q.backbone
    for name, param in [("layer3", net.layer3[0].conv1.weight), ("layer1", net.layer1[0].conv1.weight),
                        ("layer4", net.layer4[0].conv1.weight), ("head", model.encoder_q.head[0].weight)]:
        assert param.grad is not None and param.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert all(p.grad is None for p in model.encoder_k.parameters())
    # With no tracked region in the batch the region term is 0 and the frame loss is MoCo's.
    model.zero_grad()
    out = model(im_q, im_k, box_q, box_k, torch.zeros(4, dtype=torch.bool))
    assert out.region_loss.item() == 0.0
    # One tracked region alone (batch norm cannot train on one sample): left out, no error.
    out = model(im_q, im_k, box_q, box_k, torch.tensor([False, True, False, False]))
    assert out.region_loss.item() == 0.0 and out.region_keys.shape[0] == 0


def test_region_batch_norm_keeps_a_small_batchs_gradient_the_size_of_the_frame_losss():
    """Two tracked regions in a step (common at a small batch): at the default roi_size the
    region loss's gradient at conv1 stays below the frame loss's (measured 0.10-0.17x); at
    roi_size=2 layer4's batch norm sees one value per region and it is 51-447x (the likely
    cause of a video trial whose weights exploded in CI; BENCHMARKS.md)."""
    def conv1_gradient(seed, region_weight, valid, **kwargs):
        torch.manual_seed(seed)
        model = RegionMoCo(arch="resnet18", dim=16, queue_size=32, region_weight=region_weight, **kwargs)
        im_q, im_k, box_q, box_k = tiny_batch(seed)
        model(im_q, im_k, box_q, box_k, torch.tensor(valid)).loss.backward()
        return model.encoder_q.backbone.conv1.weight.grad.norm().item()

    for seed, valid in [(0, [True, True, False, False]), (1, [False, True, False, True])]:
        frame = conv1_gradient(seed, 0.0, valid)  # the frame loss alone
        assert conv1_gradient(seed, 1.0, valid) < frame, f"seed {seed}: region gradient above the frame loss's"
        assert conv1_gradient(seed, 1.0, valid, roi_size=2) > 20 * frame  # the measure sees the failure


class FakeStore:
    """Frames of solid colours, JPEG-encoded, by (video, frame index)."""

    def __init__(self, colours):
        self.colours = colours
        self.folder = "fake"

    def jpeg(self, video, index):
        image = np.full((48, 64, 3), self.colours[index], np.uint8)
        return cv2.imencode(".jpg", image)[1].tobytes()


def test_fti_queries_come_from_z_i_and_keys_from_z_i_plus_k_and_the_loss_is_moco():
    store = FakeStore({0: 20, 5: 200})
    pairs = pa.table({"video": ["v"], "frame_a": [0], "frame_b": [5]})
    view = v2.Compose([v2.Resize((32, 32)), v2.ToDtype(torch.float32, scale=True)])
    (x_q, x_k), _ = FramePairs(store, pairs, view)[0]
    assert abs(x_q.mean().item() - 20 / 255) < 0.02 and abs(x_k.mean().item() - 200 / 255) < 0.02

    trial = TrialConfig().override({"method": "fti", "method.dim": 16, "method.queue_size": 16, "batch_size": 4})
    torch.manual_seed(2)
    model = trial.method.build_model(trial)
    assert type(model) is MoCo
    before = copy.deepcopy(model)
    im_q, im_k, _, _ = tiny_batch(2)
    out = trial.method.training_step(model, (im_q, im_k), torch.zeros(4))
    loss = out.loss
    q = F.normalize(before.encoder_q(im_q), dim=1)
    with torch.no_grad():
        k = F.normalize(before.encoder_k(im_k), dim=1)
    assert loss.item() == pytest.approx(explicit_info_nce(q, k, before.queue, trial.method.temperature).item(), rel=1e-4)
    # The step's metric: the mean cosine of each query and its positive key.
    assert out.metrics["positive_similarity"].item() == pytest.approx((q * k).sum(1).mean().item(), rel=1e-4)


def test_boxes_move_with_the_augmentation_and_leave_with_the_crop():
    image = torch.zeros(3, 48, 64, dtype=torch.uint8)
    view, box, seen = augment_with_box(v2.Resize((24, 32)), image, [8.0, 4.0, 16.0, 20.0])
    assert view.shape[-2:] == (24, 32) and seen
    torch.testing.assert_close(box, torch.tensor([4.0, 2.0, 8.0, 10.0]))
    _, box, seen = augment_with_box(v2.CenterCrop((16, 16)), image, [0.0, 0.0, 10.0, 10.0])
    assert not seen
    _, _, seen = augment_with_box(v2.Resize((24, 32)), image, None)
    assert not seen


def test_tracked_pairs_sample_a_track_of_their_own_frame_pair():
    store = FakeStore({0: 20, 5: 200, 10: 90})
    pairs = pa.table({"video": ["v", "v"], "frame_a": [0, 5], "frame_b": [5, 10]})
    tracks = pa.table({"video": ["v"], "frame_a": [0], "frame_b": [5], "box_a": [[8.0, 8.0, 16.0, 16.0]],
                       "box_b": [[16.0, 8.0, 16.0, 16.0]]})
    dataset = TrackedFramePairs(store, pairs, tracks, v2.Resize((24, 32)))
    assert dataset.with_tracks == 1
    (_, _, box_q, box_k, valid), _ = dataset[0]
    assert bool(valid)
    torch.testing.assert_close(box_q, torch.tensor([4.0, 4.0, 8.0, 8.0]))
    torch.testing.assert_close(box_k, torch.tensor([8.0, 4.0, 8.0, 8.0]))
    (_, _, _, _, valid), _ = dataset[1]
    assert not bool(valid)


def test_video_method_settings_are_checked():
    trial = TrialConfig().override({"method": "region_tracker", "method.track_threshold": 1.5,
                                    "method.frame_gap": 20, "method.tracker_weights": "/nonexistent.pt",
                                    "method.matching": "hungarian"})
    problems = "\n".join(trial.problems())
    assert "method.track_threshold=1.5" in problems
    assert "method.matching='hungarian' must be one of chain, greedy" in problems
    assert "method.frame_gap=20 must be smaller than data.video.chunk_frames=20" in problems
    assert "method.tracker_weights='/nonexistent.pt' is not a file" in problems
    assert TrialConfig().override({"method": "gt_tracks"}).problems() == []
    greedy = TrialConfig().override({"method": "region_tracker", "method.matching": "greedy"})
    assert greedy.problems() == [] and greedy.flat()["method.matching"] == "greedy"  # an MLflow param


def test_the_tracks_stage_gets_the_methods_matching(monkeypatch):
    import datasets.video.regions as regions
    from trainables.methods.region_tracker import RegionTracker

    calls = []
    monkeypatch.setattr(RegionTracker, "feature_stage", lambda self, trial: "features")
    monkeypatch.setattr(regions, "run_tracks_stage", lambda *args: calls.append(args))
    for matching in ("greedy", "chain"):
        trial = TrialConfig().override({"method": "region_tracker", "method.matching": matching,
                                        "method.track_threshold": 0.3, "method.frame_gap": 4})
        trial.method.track_stage(trial)
    assert calls == [("features", 20, 4, 0.3, "", "greedy"), ("features", 20, 4, 0.3, "", "chain")]


def test_track_features_are_roi_aligned_layer3_cells_of_each_box():
    from trainables.regions import Layer3RegionFeatures

    spec = Layer3RegionFeatures(arch="resnet18", seed=3, roi_size=2)
    assert spec.key() == "random-resnet18-seed3-layer3-roi2"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(2)]
    boxes = [np.array([[0, 0, 32, 32], [10, 5, 20, 30]], np.float32), np.zeros((0, 4), np.float32)]
    features = spec()(images, boxes)
    assert [f.shape for f in features] == [(2, 256 * 4), (0, 256 * 4)]
    trunk = spec.build_trunk()
    x = (torch.from_numpy(images[0]).permute(2, 0, 1)[None].float() / 255
         - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        net = trunk
        fmap = net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))))
        rois = torch.tensor([[0, 0, 0, 32, 32], [0, 10, 5, 30, 35]], dtype=torch.float32)
        expected = roi_align(fmap, rois, (2, 2), spatial_scale=1 / 16, sampling_ratio=2, aligned=True).flatten(1)
    np.testing.assert_allclose(features[0], expected.numpy(), rtol=1e-4, atol=1e-5)


def test_a_real_video_root_is_checked_before_any_work(tmp_path):
    trial = TrialConfig().override({"method": "fti", "data.video": "video", "data.video.root": str(tmp_path),
                                    "data.video.format": "avi"})
    problems = "\n".join(trial.problems())
    assert "data.video.format='avi' is not one of auto, trackingnet, got10k, video-files" in problems
    empty = TrialConfig().override({"method": "fti", "data.video": "video", "data.video.root": str(tmp_path)})
    assert any(str(tmp_path) in p and "not a TrackingNet root" in p for p in empty.problems())
    assert "data.video.root is not set" in "\n".join(
        TrialConfig().override({"method": "fti", "data.video": "video"}).problems())
