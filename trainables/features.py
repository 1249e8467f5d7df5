"""Frozen features: a backbone's pooled output on every image of a set."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from datasets.cache import build_once, cache_root, file_stamp
from datasets.image_folder import ImagePathDataset, collate_skip_corrupt
from datasets.placement import ActorPool, actor_pool, gpu_actors, submitted_to_cluster

log = logging.getLogger(__name__)


def extract_features(
    backbone: nn.Module,
    dataset_or_paths: Dataset | Sequence[str | Path],
    batch_size: int,
    device: torch.device | str,
    transform=None,
    num_workers: int = 0,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Run a frozen backbone over a dataset in eval mode.

    Args:
        backbone: image -> N x d pooled features (the trunk before the projection head).
        dataset_or_paths: a dataset yielding `(image, label)` already transformed, or
            image paths; paths are read with `ImagePathDataset`, labelled with their
            index, and need `transform` (e.g. `augment.eval_transform`).
        batch_size: images per forward pass.
        device: where the backbone runs.
        transform: the transform for paths; ignored for a dataset.
        num_workers: DataLoader worker processes.

    Returns:
        `(features, labels, n_skipped)`: N' x d float32 features, the N' labels of the
        images that decoded (for paths: their indices into `dataset_or_paths`, so callers
        can drop the matching annotations of skipped images), and the number skipped.
    """
    if isinstance(dataset_or_paths, Dataset):
        dataset = dataset_or_paths
    else:
        if transform is None:
            raise ValueError("extract_features: a list of paths needs a transform (e.g. augment.eval_transform)")
        paths = list(dataset_or_paths)
        dataset = ImagePathDataset(paths, labels=list(range(len(paths))), transform=transform)
    if len(dataset) == 0:
        raise ValueError("extract_features: the dataset is empty")

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_skip_corrupt)
    was_training = backbone.training
    backbone.eval()
    features, labels, skipped = [], [], 0
    with torch.inference_mode():
        for images, batch_labels, n_skipped in loader:
            skipped += int(n_skipped)
            if images is None or len(images) == 0:  # every image of the batch was corrupt
                continue
            features.append(backbone(images.to(device, non_blocking=True)).float().cpu())
            labels.append(torch.as_tensor(batch_labels))
    backbone.train(was_training)
    if not features:
        raise ValueError(f"extract_features: all {skipped} images failed to decode")
    return torch.cat(features).numpy(), torch.cat(labels).numpy(), skipped


def extract_feature_maps(backbone: nn.Module, images: torch.Tensor, layers: Sequence[str], batch_size: int,
                         device: torch.device | str) -> list[torch.Tensor]:
    """Spatial outputs of a frozen backbone's `layers` (e.g. ``("layer3", "layer4")``), for the
    dense probes that need maps rather than the pooled vector (segmentation).

    `images` are N x 3 x H x W, already normalised; returns one N x C x h x w float32 CPU
    tensor per layer. The maps are taken with torchvision's ``create_feature_extractor``,
    so the backbone's forward is the one pooled features use.
    """
    from torchvision.models.feature_extraction import create_feature_extractor

    names = dict(backbone.named_modules())
    missing = [layer for layer in layers if layer not in names]
    if missing:
        raise ValueError(f"the backbone has no layer {missing[0]!r} to take feature maps from "
                         f"(a torchvision ResNet has layer1..layer4)")
    extractor = create_feature_extractor(backbone, return_nodes={layer: layer for layer in layers}).to(device).eval()
    out: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            maps = extractor(images[start:start + batch_size].to(device))
            for layer in layers:
                out[layer].append(maps[layer].float().cpu())
    return [torch.cat(out[layer]) for layer in layers]


# The outputs of a torchvision ResNet trunk's stages, as feature-similarity analyses compare
# them: display name -> the trunk's module (its output node for `create_feature_extractor`).
# "stem" is conv1-bn-relu-maxpool; "pool" the global-average-pooled output the probes score.
TRUNK_STAGES = {"stem": "maxpool", "layer1": "layer1", "layer2": "layer2", "layer3": "layer3",
                "layer4": "layer4", "pool": "avgpool"}


def extract_stage_features(backbone: nn.Module, images: torch.Tensor, batch_size: int,
                           device: torch.device | str) -> dict[str, np.ndarray]:
    """Every stage's output (`TRUNK_STAGES`) of a frozen ResNet trunk on `images` (N x 3 x H x W,
    already normalised), each flattened to N x (C * h * w) float32: the spatial layout stays
    in the features, as representation-similarity measures compare convolutional layers.

    Memory: N x (C * h * w) floats per stage (a ResNet-18 at 64 px: 16,384 for the stem and
    layer1, 512 for the pool); the caller chooses N.
    """
    maps = extract_feature_maps(backbone, images, list(TRUNK_STAGES.values()), batch_size, device)
    return {name: m.flatten(1).numpy() for name, m in zip(TRUNK_STAGES, maps)}


class FeatureExtractor:
    """One frozen backbone's features, shared by every invariance set and probe of a trial.

    Calling it with a dataset or a list of paths returns ``(features, labels)`` as
    :func:`extract_features` does; the images that failed to decode are added to
    ``skipped`` (reported as ``data/skipped_images``). ``transform`` is the evaluation
    view, for parts that build their own datasets.
    """

    def __init__(self, backbone: nn.Module, device: torch.device | str, batch_size: int, transform,
                 trunk: nn.Module | None = None, image_size: int = 0, layer: str = "pool",
                 whole_image: bool = False):
        """`trunk`, `image_size`, `layer` and `whole_image` describe the view, so that
        :meth:`view` can give another (without `trunk` it can only give this one)."""
        self.backbone = backbone
        self.device = device
        self.batch_size = batch_size
        self.transform = transform
        self.trunk, self.image_size, self.layer, self.whole_image = trunk, image_size, layer, whole_image
        self.skipped = 0
        self.parent: FeatureExtractor | None = None

    def view(self, whole_image: bool, layer: str) -> "FeatureExtractor":
        """The same frozen trunk seen another way: the whole image resized instead of the
        centre crop (`trainables.augment.eval_transform`), and/or another scored layer
        (`trainables.models.scored_layer`). Its skipped images count here too."""
        from trainables.augment import eval_transform
        from trainables.models import scored_layer

        if (whole_image, layer) == (self.whole_image, self.layer):
            return self
        if self.trunk is None or self.image_size < 1:
            raise ValueError("FeatureExtractor: built without trunk= and image_size=, it has no other view")
        child = FeatureExtractor(scored_layer(self.trunk, layer), self.device, self.batch_size,
                                 eval_transform(self.image_size, whole_image), self.trunk, self.image_size,
                                 layer, whole_image)
        child.parent = self
        return child

    def trunk_copy(self) -> nn.Module:
        """A copy of the evaluated trunk (image -> pooled features), for a part that trains it
        (the `finetune` probe): the extraction's own network is left as it was."""
        import copy

        return copy.deepcopy(self.trunk if self.trunk is not None else self.backbone)

    def __call__(self, dataset_or_paths: Dataset | Sequence[str | Path]) -> tuple[np.ndarray, np.ndarray]:
        features, labels, skipped = extract_features(
            self.backbone, dataset_or_paths, self.batch_size, self.device, self.transform)
        self.skipped += skipped
        if self.parent is not None:
            self.parent.skipped += skipped
        return features, labels


class RayDataFeatures:
    """Frozen features by Ray Data batch inference (or, `in_process`, a torch DataLoader in
    this process), cached as Parquet: the evaluation stage's extraction path (same
    interface as :class:`FeatureExtractor`).

    Images are read and embedded in an autoscaling pool of actors (`pool`), each of which
    builds the backbone once (one GPU per actor for a GPU trial, else one CPU); only the
    features come back. They are cached under ``<cache>/features/<key>/``, the key a
    digest of the weights, of the image listing (paths, sizes, modification times) and of
    the view, so scoring the same weights on the same images again extracts nothing
    (``extracted`` and ``reused`` count the images each way).
    """

    def __init__(self, weights, image_size: int, batch_size: int, cache: str = "", use_gpu: bool = False,
                 max_actors: int = 0, layer: str = "pool", whole_image: bool = False, in_process: bool = False):
        """`weights`: anything with ``build() -> nn.Module``, ``arch`` and ``digest`` (a
        `trainables.weights.BackboneWeights` or `trainables.evaluation.TrainedBackbone`);
        `layer`: the scored layer (`trainables.models.SCORED_LAYERS`); `whole_image`: the
        whole image resized instead of the centre crop (`trainables.augment.eval_transform`);
        `in_process`: extract in this process on the CPU (a torch DataLoader, no actor pool:
        a small single-node evaluation), cached the same way."""
        from trainables.augment import eval_transform
        from trainables.models import scored_layer

        self.weights = weights
        self.layer = layer
        self.whole_image = whole_image
        self.parent: RayDataFeatures | None = None
        self.backbone = scored_layer(weights.build(), layer)  # for parts that inspect the evaluated network
        self.image_size = image_size
        self.batch_size = batch_size
        self.cache = cache
        self.use_gpu = use_gpu
        self.max_actors = max_actors
        self.in_process = in_process
        # Where a part that runs the network in this process runs it: the evaluation task
        # holds no GPU (its GPU actors extract), so on the CPU.
        self.device = "cpu"
        self.transform = eval_transform(image_size, whole_image)
        self.skipped = self.extracted = self.reused = 0
        self._prefetched: dict[Path, np.ndarray] = {}
        self._prefetched_paths: set[Path] = set()

    def view(self, whole_image: bool, layer: str) -> "RayDataFeatures":
        """The same weights seen another way (as `FeatureExtractor.view`), cached under its
        own key (the key holds the layer and the view); its skipped images count here too."""
        if (whole_image, layer) == (self.whole_image, self.layer):
            return self
        child = RayDataFeatures(self.weights, self.image_size, self.batch_size, self.cache, self.use_gpu,
                                self.max_actors, layer, whole_image, self.in_process)
        child.parent = self
        return child

    def trunk_copy(self) -> nn.Module:
        """A copy of the evaluated trunk (image -> pooled features), for a part that trains it
        (the `finetune` probe): the weights' own network is left as it was."""
        import copy

        return copy.deepcopy(self.weights.build())

    def prefetch(self, path_lists: list[list]) -> None:
        """Extract the union of several sets in one Ray Data run (one actor pool, one
        model load per actor); later calls on any of them read it from memory."""
        paths = list(dict.fromkeys(Path(p) for paths in path_lists for p in paths))
        if not paths:
            return
        features, index = self._cached(paths)
        self._prefetched = {paths[i]: features[row] for row, i in enumerate(index)}
        self._prefetched_paths = set(paths)

    def __call__(self, dataset_or_paths) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(dataset_or_paths, ImagePathDataset):
            paths, labels = dataset_or_paths.paths, np.asarray(dataset_or_paths.labels)
        else:
            paths = [Path(p) for p in dataset_or_paths]
            labels = np.arange(len(paths))
        if not paths:
            raise ValueError("RayDataFeatures: no images")
        if self._prefetched_paths.issuperset(paths):
            index = np.asarray([i for i, p in enumerate(paths) if p in self._prefetched], np.int64)
            features = np.stack([self._prefetched[paths[i]] for i in index]) if len(index) else None
        else:
            features, index = self._cached(paths)
        if features is None or len(index) == 0:
            raise ValueError(f"RayDataFeatures: none of the {len(paths)} images could be decoded")
        self.skipped += len(paths) - len(index)
        if self.parent is not None:
            self.parent.skipped += len(paths) - len(index)
        return features, labels[index]

    def _cached(self, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        """Features of the decodable `paths` and their positions, from the cache or extracted."""
        import pyarrow.parquet as pq

        target = cache_root(self.cache) / "features" / self._key(paths)
        computed = []
        build_once(target, lambda folder: computed.append(self._extract(paths, folder)))
        table = pq.read_table(target / "features.parquet")
        index = table.column("index").to_numpy()
        width = int(table.schema.field("feature").type.list_size)
        features = table.column("feature").combine_chunks().flatten().to_numpy().reshape(-1, width)
        if computed:
            self.extracted += len(paths)
        else:
            self.reused += len(paths)
        return features.astype(np.float32, copy=False), index

    def _key(self, paths: list[Path]) -> str:
        import hashlib

        digest = hashlib.sha256(f"{self.weights.digest}|{self.layer}|{self.image_size}|{self.transform!r}".encode())
        for path in paths:
            digest.update(f"{path}|{file_stamp(path)}\n".encode())
        return f"{self.weights.arch}-{digest.hexdigest()[:24]}"

    def pool(self) -> ActorPool:
        """The feature actors: one GPU each when the trial uses GPUs and the cluster has or
        may add some (`datasets.placement.gpu_actors`), at most `max_actors` (0: the default)."""
        return actor_pool(self.max_actors, gpu_actors(self.use_gpu, autoscaling=submitted_to_cluster()))

    def _extract(self, paths: list[Path], folder: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        index, features = self._extract_in_process(paths) if self.in_process else self._extract_by_ray_data(paths)
        order = np.argsort(index)
        flat = pa.array(features[order].ravel(), type=pa.float32())
        table = pa.table({"index": pa.array(index[order], pa.int64()),
                          "feature": pa.FixedSizeListArray.from_arrays(flat, features.shape[1])})
        pq.write_table(table, folder / "features.parquet")

    def _extract_in_process(self, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        features, index, _ = extract_features(self.backbone, paths, self.batch_size, "cpu", transform=self.transform)
        return np.asarray(index, np.int64), np.asarray(features, np.float32)

    def _extract_by_ray_data(self, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        import ray

        pool = self.pool()
        if self.use_gpu and not pool.gpu:
            log.warning("use_gpu is set but this Ray instance has no GPUs: features are extracted on CPUs")
        items = ray.data.from_items([{"index": i, "path": str(p)} for i, p in enumerate(paths)])
        embedded = items.map_batches(
            _EmbedImages, batch_size=self.batch_size, batch_format="numpy",
            fn_constructor_kwargs={"weights": ray.put(self.weights), "image_size": self.image_size,
                                   "use_gpu": pool.gpu, "layer": self.layer, "whole_image": self.whole_image},
            **pool.map_batches_args(),
        )
        index, features = [], []
        for batch in embedded.iter_batches(batch_format="numpy", batch_size=None):
            index.append(batch["index"])
            features.append(batch["feature"])
        index = np.concatenate(index) if index else np.empty(0, np.int64)
        features = np.concatenate(features).astype(np.float32) if features else np.empty((0, 1), np.float32)
        return index, features


class _EmbedImages:
    """A Ray Data actor: the backbone built once, then batches of paths -> features."""

    def __init__(self, weights, image_size: int, use_gpu: bool, layer: str = "pool", whole_image: bool = False):
        import ray

        from trainables.augment import eval_transform
        from trainables.models import scored_layer

        if isinstance(weights, ray.ObjectRef):  # one copy in the object store, not one per actor's args
            weights = ray.get(weights)
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.model = scored_layer(weights.build(), layer).to(self.device)
        self.transform = eval_transform(image_size, whole_image)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from datasets.image_folder import load_rgb

        images, kept = [], []
        for index, path in zip(batch["index"], batch["path"]):
            image = load_rgb(Path(str(path)))
            if image is not None:  # unreadable: skipped here, counted by the caller
                images.append(self.transform(image))
                kept.append(int(index))
        if not images:
            return {"index": np.empty(0, np.int64), "feature": np.empty((0, 1), np.float32)}
        with torch.inference_mode():
            features = self.model(torch.stack(images).to(self.device)).float().cpu().numpy()
        return {"index": np.asarray(kept, np.int64), "feature": features}
