"""A trial config small enough to pretrain and evaluate in seconds on 2 cores."""
from orchestrator.config import TrialConfig

TINY = {
    "image_size": 32,
    "epochs": 2,
    "batch_size": 16,
    "method.queue_size": 64,
    "method.dim": 32,
    "data.aloi.objects": 4,
    "data.pretrain.classes": 2,
    "data.pretrain.train_per_class": 16,
    "data.pretrain.val_per_class": 8,
    "data.probe.classes": 2,
    "data.probe.train_per_class": 16,
    "data.probe.val_per_class": 8,
    "ris_max_objects": 0,
    "eval_batch_size": 64,
}


def tiny_config(data_cache, **changes) -> TrialConfig:
    """The tiny trial; `changes` are run keys (`epochs=3`); dotted keys go through `.override`."""
    return TrialConfig().override(TINY | {"data_cache": str(data_cache)} | changes)


def tiny_overrides(data_cache) -> list[str]:
    """The same config as `--set` arguments for the command line."""
    from orchestrator.config import preset

    base = preset("default").flat(params_only=False)  # the command line starts from this preset
    return [f"{k}={v}" for k, v in tiny_config(data_cache).flat(params_only=False).items() if base.get(k) != v]


def random_image_folder(root, classes: int = 2, per_class: int = 4, size: int = 40):
    """`root/train/<class>/<i>.png` of random RGB pixels, for a method's data path; `root`."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = Path(root) / "train" / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return Path(root)


def image_folder_trial(root, **changes) -> TrialConfig:
    """A trial whose ``pretrain`` role reads `root` (an image folder) in batches of 4."""
    return TrialConfig().override({"data.pretrain": "image-folder", "data.pretrain.root": str(root),
                                   "image_size": 32, "batch_size": 4, "invariances": "", "probes": ""} | changes)
