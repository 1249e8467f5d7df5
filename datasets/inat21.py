"""iNaturalist 2021's label hierarchy, read from its annotation files.

../shared/reference/datasets.md does not specify iNat21; this follows the competition's
published format (github.com/visipedia/inat_comp, 2021/README.md, "Annotation Format"):
COCO-style ``<root>/train.json`` and ``<root>/val.json`` (also ``train_mini.json``) with

    images:      {id, width, height, file_name, license, rights_holder, date,
                  latitude, longitude, location_uncertainty}
    categories:  {id, name, common_name, supercategory, kingdom, phylum, class, order,
                  family, genus, specific_epithet, image_dir_name}
    annotations: {id, image_id, category_id}

``file_name`` is relative to the root (``train/<image_dir_name>/<uuid>.jpg``), and
``image_dir_name`` is ``<5-digit id>_<kingdom>_..._<genus>_<specific_epithet>``, so an
iNat21 root is also an ImageNet-style class-folder root whose classes are the species:
a pretraining method reads it as ``image-folder``.

The hierarchy (Cole et al. 2022, Sec. 4.4, Fig. 6): :data:`RANKS`, kingdom to species. A
rank's label is the category's path from the kingdom down to that rank (two genera of one
name in different families stay two), and ``species`` is the category itself.
:func:`write_inat21_split` writes files in this layout (the synthetic set and the tests).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.errors import DatasetFormatError

TAXON_FIELDS = ("kingdom", "phylum", "class", "order", "family", "genus", "specific_epithet")
RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")


def annotation_file(root: Path | str, split: str) -> Path:
    return Path(root) / f"{split}.json"


@dataclass(frozen=True)
class Inat21Split:
    """One split: image paths, each image's category (an index into `categories`), and
    every category's taxon fields (``categories[i]["genus"]`` ...)."""

    paths: list[Path]
    category_index: np.ndarray
    categories: list[dict]

    def rank_labels(self, rank: str) -> list[tuple[str, ...]]:
        """Each category's label at `rank` (its path from the kingdom to that rank)."""
        if rank not in RANKS:
            raise ValueError(f"unknown rank {rank!r}; the ranks are {', '.join(RANKS)}")
        depth = RANKS.index(rank) + 1  # species includes specific_epithet
        return [tuple(str(c[f]) for f in TAXON_FIELDS[:depth]) for c in self.categories]


def _fail(path: Path, what: str) -> DatasetFormatError:
    return DatasetFormatError(f"{path}: {what}")


def read_inat21_split(root: Path | str, split: str) -> Inat21Split:
    """`<root>/<split>.json` parsed and checked: every image annotated once with a known
    category, every category carrying the seven taxon fields. A fault raises
    `DatasetFormatError` naming the file and the entry. Image files are not opened."""
    path = annotation_file(root, split)
    if not path.is_file():
        raise _fail(path, f"missing: an iNat21 root holds {split}.json beside its {split}/ folder")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise _fail(path, f"not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise _fail(path, "not a JSON object with images, categories and annotations")
    for key in ("images", "categories", "annotations"):
        if not isinstance(data.get(key), list):
            raise _fail(path, f"no '{key}' list (iNat21's COCO-style layout)")
    if not data["categories"]:
        raise _fail(path, "'categories' is empty")
    categories, by_id = [], {}
    for i, category in enumerate(data["categories"]):
        missing = [f for f in ("id", *TAXON_FIELDS) if not isinstance(category, dict) or f not in category]
        if missing:
            raise _fail(path, f"categories[{i}] lacks {', '.join(missing)}")
        if category["id"] in by_id:
            raise _fail(path, f"categories[{i}]: id {category['id']} appears twice")
        by_id[category["id"]] = len(categories)
        categories.append({f: category[f] for f in ("id", *TAXON_FIELDS)})
    images = {}
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            raise _fail(path, f"images[{i}] lacks an id or a file_name string")
        if image["id"] in images:
            raise _fail(path, f"images[{i}]: id {image['id']} appears twice")
        images[image["id"]] = image["file_name"]
    labelled = {}
    for i, annotation in enumerate(data["annotations"]):
        if not isinstance(annotation, dict) or "image_id" not in annotation or "category_id" not in annotation:
            raise _fail(path, f"annotations[{i}] lacks image_id or category_id")
        if annotation["image_id"] not in images:
            raise _fail(path, f"annotations[{i}]: image_id {annotation['image_id']} is no image of the file")
        if annotation["category_id"] not in by_id:
            raise _fail(path, f"annotations[{i}]: category_id {annotation['category_id']} is no category of the file")
        if annotation["image_id"] in labelled:
            raise _fail(path, f"annotations[{i}]: image {annotation['image_id']} is annotated twice")
        labelled[annotation["image_id"]] = by_id[annotation["category_id"]]
    unlabelled = [image_id for image_id in images if image_id not in labelled]
    if unlabelled:
        raise _fail(path, f"{len(unlabelled)} images have no annotation (first: id {unlabelled[0]})")
    order = sorted(images)
    return Inat21Split(paths=[Path(root) / images[i] for i in order],
                       category_index=np.asarray([labelled[i] for i in order], np.int64),
                       categories=categories)


def image_dir_name(index: int, taxon: dict) -> str:
    """iNat21's class folder name: ``00000_Animalia_..._Lumbricus_terrestris``."""
    return "_".join([f"{index:05d}", *(str(taxon[f]) for f in TAXON_FIELDS)])


def write_inat21_split(root: Path | str, split: str, taxa: list[dict], files: list[tuple[str, int, int, int]]) -> Path:
    """Write `<root>/<split>.json` in iNat21's layout: `taxa` (the seven taxon fields of each
    category, ids 0, 1, ...), `files` as (file_name relative to root, category id, width,
    height). Returns the file. The images themselves are the caller's."""
    categories = []
    for index, taxon in enumerate(taxa):
        species = f"{taxon['genus']} {taxon['specific_epithet']}"
        categories.append({"id": index, "name": species, "common_name": species, "supercategory": taxon["kingdom"],
                           **{f: taxon[f] for f in TAXON_FIELDS}, "image_dir_name": image_dir_name(index, taxon)})
    images = [{"id": i, "width": w, "height": h, "file_name": name, "license": 0, "rights_holder": "synthetic",
               "date": "2021-01-01 00:00:00+00:00", "latitude": float("nan"), "longitude": float("nan"),
               "location_uncertainty": float("nan")} for i, (name, _, w, h) in enumerate(files)]
    annotations = [{"id": i, "image_id": i, "category_id": category} for i, (_, category, _, _) in enumerate(files)]
    data = {"info": {"year": 2021, "version": "synthetic", "description": "iNat21 layout, generated",
                     "contributor": "demystify-ssl", "url": "", "date_created": "2021-01-01"},
            "images": images, "categories": categories, "annotations": annotations,
            "licenses": [{"id": 0, "name": "generated", "url": ""}]}
    path = annotation_file(root, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    # NaN as iNat21 writes it (bare NaN, which Python's json reads and writes).
    path.write_text(json.dumps(data))
    return path
