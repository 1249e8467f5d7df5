"""Class-folder scanning, decoding to RGB uint8 CHW, and corrupt files skipped and counted."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datasets.errors import DatasetFormatError
from datasets.image_folder import (
    ImageFolderDataset,
    ImagePathDataset,
    collate_skip_corrupt,
    scan_image_folder,
)

# torchvision 0.29 deprecates its image decoders in favour of TorchCodec (not installed).
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning")


def _image(path: Path, value: int = 100, size: tuple[int, int] = (6, 5), grey: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = size if grey else (*size, 3)
    pixels = np.full(shape, value, np.uint8)
    if not grey:
        pixels[..., 2] = 255  # red in OpenCV's BGR order
    assert cv2.imwrite(str(path), pixels)
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "train"
    _image(root / "zebra" / "b.png")
    _image(root / "zebra" / "a.JPG")
    _image(root / "apple" / "nested" / "deep.bmp")
    _image(root / "apple" / "x.ppm")
    _image(root / "mango" / "grey.pgm", grey=True)
    (root / "mango" / "notes.txt").write_text("not an image")
    (root / ".cache").mkdir()
    _image(root / ".cache" / "hidden.png")
    return root


def test_scan_order_and_labels(folder):
    samples, classes = scan_image_folder(folder)
    assert classes == ["apple", "mango", "zebra"]
    relative = [(str(path.relative_to(folder)), label) for path, label in samples]
    assert relative == [
        ("apple/nested/deep.bmp", 0),
        ("apple/x.ppm", 0),
        ("mango/grey.pgm", 1),
        ("zebra/a.JPG", 2),
        ("zebra/b.png", 2),
    ]


def test_scan_errors_name_the_root(tmp_path):
    with pytest.raises(DatasetFormatError, match="missing.*does not exist"):
        scan_image_folder(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    _image(tmp_path / "flat" / "loose.png")
    with pytest.raises(DatasetFormatError, match="flat.*no class folders"):
        scan_image_folder(tmp_path / "flat")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "cat" / "readme.md").write_text("x")
    with pytest.raises(DatasetFormatError, match="empty.*no images"):
        scan_image_folder(tmp_path / "empty")


def test_image_folder_dataset_decodes_rgb_uint8_chw(folder):
    dataset = ImageFolderDataset(folder)
    assert len(dataset) == 5 and dataset.class_to_idx == {"apple": 0, "mango": 1, "zebra": 2}
    for index in range(len(dataset)):
        image, label = dataset[index]
        assert image.dtype == torch.uint8 and image.shape == (3, 6, 5)
        assert label == dataset.labels[index]
    colour, _ = dataset[4]  # zebra/b.png: red channel 255 after BGR -> RGB
    assert colour[0].min() == 255 and colour[2].max() == 100
    grey, _ = dataset[2]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    flipped = ImageFolderDataset(folder, transform=lambda x: x.flip(-1).float())[4][0]
    assert flipped.dtype == torch.float32


def test_image_path_dataset_labels_default_to_index(folder):
    paths = [path for path, _ in scan_image_folder(folder)[0]]
    assert [label for _, label in ImagePathDataset(paths)] == [0, 1, 2, 3, 4]
    assert ImagePathDataset(paths[:2], labels=[7, 9])[1][1] == 9
    with pytest.raises(ValueError, match="2 paths but 1 labels"):
        ImagePathDataset(paths[:2], labels=[1])


@pytest.fixture
def with_corrupt(tmp_path) -> list[Path]:
    good_a = _image(tmp_path / "a.png", 10)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(_image(tmp_path / "full.png", 20).read_bytes()[:60])
    text = tmp_path / "text.jpg"
    text.write_text("this is not a JPEG")
    good_b = _image(tmp_path / "b.png", 30)
    return [good_a, truncated, text, good_b]


def test_corrupt_files_are_skipped_and_counted(with_corrupt, caplog):
    dataset = ImagePathDataset(with_corrupt)
    with caplog.at_level(logging.WARNING, logger="datasets.image_folder"):
        assert dataset[1] is None and dataset[2] is None
    assert "truncated.png" in caplog.text and "text.jpg" in caplog.text
    batches = list(DataLoader(dataset, batch_size=4, collate_fn=collate_skip_corrupt))
    assert len(batches) == 1
    images, labels, skipped = batches[0]
    assert skipped == 2
    assert labels.tolist() == [0, 3]  # default labels say which items survived
    assert images.shape == (2, 3, 6, 5) and images.dtype == torch.uint8
    assert images[0, 1, 0, 0] == 10 and images[1, 1, 0, 0] == 30


def test_collate_with_multi_view_transform(with_corrupt):
    two_views = ImagePathDataset(with_corrupt, transform=lambda x: (x, x.flip(-1)))
    images, labels, skipped = collate_skip_corrupt([two_views[i] for i in range(4)])
    assert isinstance(images, tuple) and len(images) == 2
    assert images[0].shape == images[1].shape == (2, 3, 6, 5)
    assert labels.tolist() == [0, 3] and skipped == 2


def test_collate_all_corrupt_gives_empty_batch():
    images, labels, skipped = collate_skip_corrupt([None, None, None])
    assert images.numel() == 0 and labels.numel() == 0 and labels.dtype == torch.int64 and skipped == 3


def test_fast_root_check_matches_the_scan(tmp_path):
    from datasets.errors import DatasetFormatError
    from datasets.image_folder import validate_image_folder_root

    with pytest.raises(DatasetFormatError, match="does not exist"):
        validate_image_folder_root(tmp_path / "missing")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("x")
    with pytest.raises(DatasetFormatError, match="no images"):
        validate_image_folder_root(tmp_path)
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / "b" / "deep" / "x.PNG").write_bytes(b"")
    assert validate_image_folder_root(tmp_path) == tmp_path


# -- a missing file is an error, not a skipped image (issue 23, finding 2) ----------------------------
@pytest.mark.parametrize("name", ["gone.png", "gone.bmp"])  # torchvision's decoder, then Pillow's
def test_a_missing_file_is_an_error_naming_it_not_a_skipped_image(with_corrupt, name):
    missing = with_corrupt[0].parent / name
    with pytest.raises(FileNotFoundError, match=name):
        ImagePathDataset([*with_corrupt, missing])[4]


def test_feature_extraction_refuses_a_missing_file_instead_of_scoring_a_subset(with_corrupt):
    from trainables.features import _EmbedImages, extract_features

    missing = str(with_corrupt[0].parent / "gone.png")
    flatten = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    with pytest.raises(FileNotFoundError, match="gone.png"):
        extract_features(flatten, [with_corrupt[0], missing], 4, "cpu", transform=lambda x: x.float())

    class Weights:  # the feature actors' interface (trainables.weights.BackboneWeights)
        def build(self):
            return flatten

    embed = _EmbedImages(Weights(), image_size=4, use_gpu=False)
    batch = {"index": np.arange(2), "path": np.asarray([str(with_corrupt[0]), missing])}
    with pytest.raises(FileNotFoundError, match="gone.png"):
        embed(batch)
