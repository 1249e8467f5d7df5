"""Pretraining-only corruptions (Cole et al. 2022, Sec. 4.3) on tiny images."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from datasets.corruptions import CORRUPTIONS, corrupt, corrupted_image_folder
from orchestrator.config import ConfigError, TrialConfig, check
from tests.tiny import image_folder_trial, random_image_folder

NYQUIST = 0.5  # cycles per pixel


def textured(seed: int = 0, size: int = 64) -> Image.Image:
    """A smooth pattern (low frequencies) under pixel noise (every frequency)."""
    yy, xx = np.mgrid[:size, :size] / size
    smooth = 127 + 80 * np.sin(2 * np.pi * xx) * np.cos(2 * np.pi * yy)
    pixels = smooth[..., None] + np.random.default_rng(seed).normal(0, 30, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def spectrum(image: Image.Image):
    gray = np.asarray(image, dtype=np.float64).mean(2)
    radius = np.hypot(np.fft.fftfreq(gray.shape[0])[:, None], np.fft.fftfreq(gray.shape[1])[None, :])
    return np.fft.fft2(gray - gray.mean()), radius


def energy_above(image: Image.Image, cutoff: float) -> float:
    f, radius = spectrum(image)
    return float((np.abs(f[radius > cutoff]) ** 2).sum())


def low_band_change(before: Image.Image, after: Image.Image, cutoff: float = NYQUIST / 8) -> float:
    """Relative change of the spectrum at frequencies up to `cutoff`."""
    fa, radius = spectrum(before)
    fb, _ = spectrum(after)
    low = radius <= cutoff
    return float(np.linalg.norm(fa[low] - fb[low]) / np.linalg.norm(fa[low]))


def corrupted(name: str, seed: int = 0, image: Image.Image | None = None) -> Image.Image:
    return corrupt(image or textured(), name, np.random.default_rng(seed))


def test_downsampling_destroys_high_frequencies_and_keeps_the_size():
    clean = textured()
    high = energy_above(clean, NYQUIST / 4)
    half, quarter = corrupted("downsample2"), corrupted("downsample4")
    assert half.size == quarter.size == clean.size
    assert energy_above(half, NYQUIST / 4) < 0.2 * high
    assert energy_above(quarter, NYQUIST / 4) < 0.05 * high
    assert energy_above(quarter, NYQUIST / 8) < energy_above(half, NYQUIST / 8)  # 4x loses more
    assert low_band_change(clean, quarter) < 0.05  # the coarse pattern survives


def test_jpeg_and_salt_pepper_keep_low_frequencies_and_change_pixels():
    clean = textured()
    for name in ("jpeg", "salt_pepper"):
        out = corrupted(name)
        assert out.size == clean.size and not np.array_equal(np.asarray(out), np.asarray(clean))
        assert low_band_change(clean, out) < 0.2, name
    pixels = np.asarray(corrupted("salt_pepper"))
    hit = np.any(pixels != np.asarray(clean), axis=2)
    assert 0.02 < hit.mean() < 0.08  # the 5% rate
    assert set(np.unique(pixels[hit])) <= {0, 255}
    assert energy_above(corrupted("blur"), NYQUIST / 4) < 0.2 * energy_above(clean, NYQUIST / 4)


def test_corruptions_are_reproducible_from_their_seed():
    for name in CORRUPTIONS:
        assert np.array_equal(np.asarray(corrupted(name, seed=1)), np.asarray(corrupted(name, seed=1))), name
    assert not np.array_equal(np.asarray(corrupted("salt_pepper", seed=1)), np.asarray(corrupted("salt_pepper", seed=2)))


def file_digests(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.png"))}


def test_only_the_pretraining_images_are_corrupted(tmp_path):
    from trainables.pretrain import train_set

    root = random_image_folder(tmp_path / "data", classes=2, per_class=4, size=32)
    clean_files = file_digests(root)
    for name in ("downsample2", "jpeg"):
        trial = image_folder_trial(root, pretrain_corruption=name, data_cache=str(tmp_path / "cache"))
        dataset = train_set(trial)
        assert len(dataset) == 8 and all(tmp_path / "cache" in p.parents for p in dataset.paths)
        copy = np.asarray(Image.open(dataset.paths[0]))
        original = np.asarray(Image.open(root / dataset.paths[0].relative_to(dataset.root.parent)))
        assert copy.shape == original.shape and not np.array_equal(copy, original)
        assert trial.root("pretrain") == root  # what the evaluation would read: the clean root
    assert file_digests(root) == clean_files  # no evaluation image was touched
    # Built once: another trial seed reads the same copy, byte for byte.
    first = train_set(image_folder_trial(root, pretrain_corruption="jpeg", data_cache=str(tmp_path / "cache")))
    copy_files = file_digests(first.root)
    second = train_set(image_folder_trial(root, seed=1, pretrain_corruption="jpeg", data_cache=str(tmp_path / "cache")))
    assert second.root == first.root and file_digests(second.root) == copy_files
    # `none` is the root itself.
    assert corrupted_image_folder(root, "none", seed=0) == root


def test_a_bad_corruption_is_a_config_error_before_ray():
    with pytest.raises(ConfigError, match="pretrain_corruption='noise' is not one of none, downsample2"):
        check([TrialConfig().override({"pretrain_corruption": "noise"})])
    with pytest.raises(ConfigError, match="pretrain_jpeg_quality=0 must be from 1 to 95"):
        check([TrialConfig().override({"pretrain_jpeg_quality": 0})])
    with pytest.raises(ConfigError, match="pretrain_corruption=jpeg corrupts image-folder roots; method=fti"):
        check([TrialConfig().override({"method": "fti", "pretrain_corruption": "jpeg"})])
