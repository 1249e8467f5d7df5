"""A trial config small enough to pretrain and evaluate in seconds on 2 cores."""
from orchestrator.config import TrialConfig


def tiny_config(data_cache, **changes) -> TrialConfig:
    return TrialConfig(
        image_size=32,
        epochs=2,
        batch_size=16,
        moco_queue_size=64,
        moco_dim=32,
        synthetic_objects=4,
        synthetic_classes=2,
        synthetic_train_per_class=16,
        synthetic_val_per_class=8,
        ris_max_objects=0,
        eval_batch_size=64,
        data_cache=str(data_cache),
    ).replace(**changes)


def tiny_overrides(data_cache) -> list[str]:
    """The same config as `--set` arguments for the command line."""
    base = TrialConfig().to_dict()
    return [f"{k}={v}" for k, v in tiny_config(data_cache).to_dict().items() if base[k] != v]
