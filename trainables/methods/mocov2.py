"""MoCo v2 (Chen et al. 2020, "Improved Baselines with Momentum Contrastive Learning"),
the method whose invariances the paper dissects (Sec. 4-5).

Two random views of each image (the MoCo v2 augmentation, whose crop scale is the
paper's "aggressive cropping" knob); the query encoder learns to pick the key of its own
image among a queue of keys of other images (InfoNCE, paper Eq. 1). The model, queue and
momentum encoder are in ``trainables.moco``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor, nn
from torch.utils.data import Dataset

from datasets.sources.base import IMAGE_FOLDER, DataRole, split_dir
from trainables.adversarial import adversarial_problems
from trainables.augment import TwoCropsTransform, crop_scale_problem, mocov2_transform
from trainables.methods.base import METHODS, Method, StepOutput
from trainables.config import per_worker_batch
from trainables.moco import MoCo, moco_problems, queue_overlap_warning, shuffle_bn_problem


def two_view_dataset(root: Path, image_size: int, crop_scale: tuple[float, float]) -> Dataset:
    """The ``train/`` split of an image folder, each item two independent MoCo v2 views
    (the two-view methods' data: MoCo v2, SimCLR, BYOL)."""
    from datasets.image_folder import ImageFolderDataset

    return ImageFolderDataset(split_dir(root, "train"), transform=TwoCropsTransform(mocov2_transform(image_size, crop_scale)))


@METHODS.register
@dataclass(frozen=True)
class MoCoV2(Method):
    """``method=mocov2``: MoCo v2 on the ``train/`` split of an image-folder role ``pretrain``."""

    name: ClassVar[str] = "mocov2"
    roles: ClassVar[dict[str, DataRole]] = {"pretrain": DataRole(IMAGE_FOLDER, "synthetic-objects", ("train",))}
    dim: int = 128  # output width of the projection head
    queue_size: int = 256  # K negatives; a multiple of the global batch, well below the data size
    momentum: float = 0.99  # m of the key encoder's update
    temperature: float = 0.2  # tau of Eq. 1
    crop_scale_min: float = 0.2  # RandomResizedCrop's area range: the paper's cropping knob
    crop_scale_max: float = 1.0
    # Key sub-batches per worker with their own BN statistics (MoCo's GPU count; 1: off).
    shuffle_bn_groups: int = 1
    # Adversarial contrastive examples (trainables.adversarial): alpha of the FGSM queries' loss (0: off)
    adversarial_weight: float = 0.0
    adversarial_epsilon: float = 0.03  # their FGSM step in pixel units (images in [0, 1])

    def problems(self, trial: Any) -> list[str]:
        out = moco_problems(self.dim, self.queue_size, self.momentum, self.temperature,
                            global_batch=int(trial.batch_size))
        crop = crop_scale_problem(self.crop_scale_min, self.crop_scale_max)
        try:
            per_worker = per_worker_batch(int(trial.batch_size), int(trial.num_workers))
        except ValueError:
            per_worker = None  # the trial's own check names the uneven split
        if per_worker is not None and (problem := shuffle_bn_problem(per_worker, self.shuffle_bn_groups)):
            out.append(problem)
        return out + ([crop] if crop else []) + adversarial_problems(self.adversarial_weight, self.adversarial_epsilon)

    def build_model(self, trial: Any) -> MoCo:
        return MoCo(arch=trial.arch, dim=self.dim, queue_size=self.queue_size,
                    momentum=self.momentum, temperature=self.temperature,
                    shuffle_bn_groups=self.shuffle_bn_groups,
                    adversarial_weight=self.adversarial_weight, adversarial_epsilon=self.adversarial_epsilon)

    def train_dataset(self, roots: dict[str, Path], trial: Any) -> Dataset:
        return two_view_dataset(roots["pretrain"], int(trial.image_size), (self.crop_scale_min, self.crop_scale_max))

    def training_step(self, model: nn.Module, inputs: Any, labels: Tensor) -> StepOutput:
        im_q, im_k = inputs
        out = model(im_q, im_k)
        # The mean cosine of a query and its positive key (column 0 of the logits, times tau).
        metrics = {"positive_similarity": out.logits[:, 0].detach().mean() * self.temperature}
        if out.adversarial_loss is not None:
            metrics["adversarial_loss"] = out.adversarial_loss.detach()
        return StepOutput(out.loss, metrics)

    def data_warnings(self, num_images: int, where: str) -> list[str]:
        warning = queue_overlap_warning(self.queue_size, num_images, where)
        return [warning] if warning else []
