"""A contact sheet of the synthetic data: turntable conditions and object-centric samples.

    python -m datasets.synthetic.contact_sheet docs/images/synthetic_contact_sheet.png

Top: a few synthetic-ALOI objects (rows) under some of their viewpoints, illumination
directions and illumination colours (columns, labelled with ALOI's condition names).
Bottom: object-centric samples with their class names. Every tile is rendered with the
same functions and seeds the generators use, so the sheet shows what they write.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from datasets.synthetic.objects import instance_rng, photograph_instance
from datasets.synthetic.render import write_png
from datasets.synthetic.shapes import CATEGORIES
from datasets.synthetic.turntable import aloi_conditions, render_condition, turntable_object

DEFAULT_OBJECTS = (6, 7, 5, 10, 13, 2)  # mug, table, torus, lamp, chair, box with the default cycle
DEFAULT_CONDITIONS = ("r0", "r60", "r120", "r180", "r240", "l1c2", "l3c2", "l5c2", "l8c1", "l8c3", "i110", "i170", "i250")
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT = (225, 225, 225)
_PAPER = (24, 24, 28)


def _label(width: int, height: int, text: str, scale: float = 0.38) -> np.ndarray:
    strip = np.empty((height, width, 3), np.uint8)
    strip[:] = _PAPER
    (w, h), _ = cv2.getTextSize(text, _FONT, scale, 1)
    cv2.putText(strip, text, ((width - w) // 2, (height + h) // 2), _FONT, scale, _TEXT, 1, cv2.LINE_AA)
    return strip


def contact_sheet(
    seed: int = 0,
    tile: int = 64,
    objects: tuple[int, ...] = DEFAULT_OBJECTS,
    conditions: tuple[str, ...] = DEFAULT_CONDITIONS,
    samples_per_class: int = 2,
) -> np.ndarray:
    """The contact sheet as an RGB uint8 image."""
    by_name = {c.name: c for c in aloi_conditions()}
    unknown = [name for name in conditions if name not in by_name]
    if unknown:
        raise ValueError(f"unknown ALOI conditions {unknown}")
    margin, header = 84, 18
    width = margin + tile * len(conditions)
    rows = [np.hstack([_label(margin, header, "synthetic ALOI")] + [_label(tile, header, n) for n in conditions])]
    for number in objects:
        obj = turntable_object(number, seed)
        tiles = [render_condition(obj, by_name[name], tile) for name in conditions]
        rows.append(np.hstack([_label(margin, tile, f"{number} {obj.mesh.category}")] + tiles))

    rows.append(_label(width, header + 6, "object-centric samples (train split), class names below"))
    samples = []
    for category in CATEGORIES:
        for instance in range(samples_per_class):
            photo = photograph_instance(category, instance_rng(seed, "train", category, instance), 1, tile)[0]
            samples.append(np.vstack([photo, _label(tile, 14, category, 0.33)]))
    per_row = (width - margin) // tile
    for start in range(0, len(samples), per_row):
        chunk = samples[start:start + per_row]
        pad = width - margin - tile * len(chunk)
        parts = [_label(margin, tile + 14, "")] + chunk + ([_label(pad, tile + 14, "")] if pad else [])
        rows.append(np.hstack(parts))
    return np.vstack(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile", type=int, default=64, help="tile size in pixels")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_png(args.out, contact_sheet(seed=args.seed, tile=args.tile), compression=9)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
