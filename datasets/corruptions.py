"""Corrupted copies of a pretraining set (Cole et al. 2022, Sec. 4.3, "Data quality").

Cole et al. pretrain on corrupted images and evaluate on clean ones: downsampling (2x, 4x:
down, then back up to the input size, so only the resolution is lost), JPEG compression,
salt-and-pepper noise, and blur. Here a corruption makes a copy of an image-folder root's
``train/`` split in the data cache (built once, PNG so nothing further is lost), which only
the method reads: the probes and the invariance sets read their own, clean roots. Each
image's noise is drawn from ``(seed, image index)``, so a copy is reproducible.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

NONE = "none"
CORRUPTIONS = (NONE, "downsample2", "downsample4", "jpeg", "salt_pepper", "blur")


def corruption_problems(name: str, jpeg_quality: int, salt_pepper_rate: float, blur_sigma: float) -> list[str]:
    """The pretraining corruption's settings' problems, named by their trial keys."""
    out = []
    if name not in CORRUPTIONS:
        out.append(f"pretrain_corruption={name!r} is not one of {', '.join(CORRUPTIONS)}")
    if not 1 <= jpeg_quality <= 95:
        out.append(f"pretrain_jpeg_quality={jpeg_quality} must be from 1 to 95 (PIL's useful range)")
    if not 0 < salt_pepper_rate < 1:
        out.append(f"pretrain_salt_pepper_rate={salt_pepper_rate} must be in (0, 1)")
    if blur_sigma <= 0:
        out.append(f"pretrain_blur_sigma={blur_sigma} must be positive")
    return out


def corrupt(image: Image.Image, name: str, rng: np.random.Generator, jpeg_quality: int = 10,
            salt_pepper_rate: float = 0.05, blur_sigma: float = 1.0) -> Image.Image:
    """`image` (RGB) corrupted by `name`, at its own size."""
    if name == NONE:
        return image
    if name.startswith("downsample"):
        factor = int(name.removeprefix("downsample"))
        small = image.resize((max(1, image.width // factor), max(1, image.height // factor)), Image.BICUBIC)
        return small.resize(image.size, Image.BICUBIC)
    if name == "jpeg":
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=jpeg_quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    if name == "salt_pepper":
        # No PIL or torchvision operation draws it: each pixel, with probability `rate`,
        # becomes black or white (equally likely), all channels alike.
        pixels = np.array(image)
        hit = rng.random(pixels.shape[:2]) < salt_pepper_rate
        pixels[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255)[:, None]
        return Image.fromarray(pixels)
    if name == "blur":
        return image.filter(ImageFilter.GaussianBlur(radius=blur_sigma))  # PIL's radius is the sigma
    raise ValueError(f"unknown corruption {name!r}; one of {', '.join(CORRUPTIONS)}")


def corrupted_image_folder(root: Path, name: str, seed: int, jpeg_quality: int = 10,
                           salt_pepper_rate: float = 0.05, blur_sigma: float = 1.0) -> Path:
    """A cached copy of `root`'s ``train/`` split, every image corrupted by `name`; `root`
    itself when `name` is ``none``. The copy's folder names the root (a digest of its path),
    the corruption and its settings."""
    from datasets.cache import build_once, cache_key, cache_root
    from datasets.image_folder import scan_image_folder

    if name == NONE:
        return Path(root)
    root = Path(root).resolve()
    settings = {"jpeg": {"quality": jpeg_quality}, "salt_pepper": {"rate": salt_pepper_rate},
                "blur": {"sigma": blur_sigma}}.get(name, {})
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    target = cache_root() / "corrupted" / cache_key(name, 1, root=digest, seed=seed, **settings)

    def build(tmp: Path) -> None:
        samples, classes = scan_image_folder(root / "train")
        for index, (path, label) in enumerate(samples):
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), index]))
            out = tmp / "train" / classes[label] / path.relative_to(root / "train" / classes[label])
            out = out.with_suffix(".png")
            try:
                image = Image.open(path).convert("RGB")
            except OSError:
                continue  # unreadable: training would skip it too (datasets.image_folder.ReplaceCorrupt)
            out.parent.mkdir(parents=True, exist_ok=True)
            corrupt(image, name, rng, jpeg_quality, salt_pepper_rate, blur_sigma).save(out)

    return build_once(target, build)
