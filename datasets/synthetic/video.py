"""Synthetic tracking videos in TrackingNet's on-disk layout, with exact boxes.

Each video shows one procedurally generated object (``datasets.synthetic.shapes``)
moving in front of a cluttered background; the object turns
about its vertical axis (viewpoint change), its lamp swings round and changes colour
temperature (illumination change), and it passes behind an occluding bar. The box of
the tracked object is the bounding box of its whole silhouette (occluded parts
included), computed from the rasteriser's face-id buffer, so ground-truth tracks are
exact.

How the background moves is a knob (``background_motion``), because it decides what a
positive pair of Frame Temporal Invariance, (z_i, z_{i+k}), has in common:

- ``"pan"`` (the default): the camera follows the object, so the background streams
  past at ``background_speed`` frame widths per frame, across a long strip of
  independent clutter tiles. At the default 0.25, frames k >= 4 apart show disjoint
  background (k = 2: half of it is shared), so what a pair at the source's default
  k = 5 must bridge is the object's change (7.5-22.5 degrees of turn, relighting), not
  a background both frames share. ``background_speed=0`` is a static background.
  ``background_tile``: the side of the strip's clutter tiles, in units of the frame's
  longer side (1.3: the first pan's; tiles shorter than the frame are laid out in rows,
  so a frame shows many of them and frames k apart show different ones).
  ``background_bar``: ``"frame"``, one occluding bar standing still in the frame, of one
  colour for the whole video (the first pan's); ``"world"``, bars 0.6-1.4 frame widths
  apart along the strip, each of its own width and colour, streaming past with the
  background, so the object passes behind one every few frames.
- ``"drift"``: the generator's first version: the camera drifts across one background
  1.3x the frame over the whole video (about 0.2 px per frame at 128 px), so frames k
  apart share almost all of their background: a shortcut for FTI (issue 21;
  ``benchmarks/bench_video_background.py`` measures it).

The object, its path, turn and lamp are drawn from the same random stream whatever the
background's settings: only the background and the bar differ (the first pan's settings
render its videos unchanged). Layout (``datasets.video.sources``
reads it):

    root/TRAIN_0/frames/<video>/0.jpg 1.jpg ... (N-1).jpg
    root/TRAIN_0/anno/<video>.txt          one "x,y,w,h" line per frame

``<video>`` looks like a TrackingNet id: 11 characters from YouTube's alphabet, ``_0``.
"""
from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from datasets.cache import build_once, cache_key, cache_root
from datasets.synthetic.objects import clutter_background
from datasets.synthetic.parallel import run_jobs
from datasets.synthetic.render import Camera, Lighting, Pose, blackbody_rgb, direction, rasterize, rotation_z, shade
from datasets.synthetic.shapes import CATEGORIES, make_object

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
CHUNK_FOLDER = "TRAIN_0"
_SEED_STREAM = 3  # keeps these seeds apart from the other generators'
_SUPERSAMPLE = 2
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
BACKGROUND_MOTIONS = ("pan", "drift")
DEFAULT_BACKGROUND_MOTION = "pan"
DEFAULT_BACKGROUND_SPEED = 0.25  # frame widths per frame: disjoint backgrounds at k >= 4
OLD_BACKGROUND_TILE = 1.3  # the first pan's clutter tiles: 1.3x the frame's longer side
DEFAULT_BACKGROUND_TILE = 0.25  # about 5 tiles across a frame; none shared at k >= 4 (bench_video_background)
BAR_ANCHORS = ("frame", "world")  # the occluding bar stands still in the frame, or moves with the background
DEFAULT_BAR = "world"
_BACKGROUND_STREAM = 1  # the pan's strip: its own random stream, so the object's draws match "drift"'s
_SEAM = 0.25  # neighbouring tiles of the strip cross-fade over this fraction of a tile (no hard edge)


def video_name(rng: np.random.Generator) -> str:
    """A TrackingNet-like video id: 11 YouTube-id characters and ``_0``."""
    return "".join(_ID_ALPHABET[i] for i in rng.integers(0, len(_ID_ALPHABET), 11)) + "_0"


def background_problems(motion: str, speed: float, tile: float = DEFAULT_BACKGROUND_TILE,
                        bar: str = DEFAULT_BAR) -> list[str]:
    """Readable problems with a background motion, speed, tile size and bar anchor (empty when usable)."""
    out = []
    if motion not in BACKGROUND_MOTIONS:
        out.append(f"background_motion={motion!r} must be one of {', '.join(BACKGROUND_MOTIONS)}")
    if not np.isfinite(speed) or speed < 0:
        out.append(f"background_speed={speed} must be a finite number >= 0 (frame widths per frame)")
    elif motion == "drift" and speed != DEFAULT_BACKGROUND_SPEED:
        out.append(f"background_speed={speed} is only read by background_motion='pan' (drift's speed is fixed)")
    if not np.isfinite(tile) or not 0.05 <= tile <= 4:
        out.append(f"background_tile={tile} must be in 0.05..4 (clutter tile side / the frame's longer side)")
    elif motion == "drift" and tile != DEFAULT_BACKGROUND_TILE:
        out.append(f"background_tile={tile} is only read by background_motion='pan' (drift has one background)")
    if bar not in BAR_ANCHORS:
        out.append(f"background_bar={bar!r} must be one of {', '.join(BAR_ANCHORS)}")
    elif motion == "drift" and bar != DEFAULT_BAR:
        out.append(f"background_bar={bar!r} is only read by background_motion='pan' (drift's bar is the frame's)")
    return out


def clutter_strip(rng: np.random.Generator, side: int, length: int) -> np.ndarray:
    """A ``side`` x ``length`` RGB strip of independent clutter tiles, cross-faded at the seams."""
    overlap = max(1, int(side * _SEAM))
    step = side - overlap
    tiles = 1 + max(0, -(-(length - side) // step))
    strip = np.zeros((side, step * (tiles - 1) + side, 3), np.float32)
    fade = np.linspace(0.0, 1.0, overlap, dtype=np.float32)[None, :, None]
    for i in range(tiles):
        tile = clutter_background(rng, side).astype(np.float32)
        if i:
            tile[:, :overlap] = strip[:, i * step:i * step + overlap] * (1 - fade) + tile[:, :overlap] * fade
        strip[:, i * step:i * step + side] = tile
    return strip[:, :length]


def clutter_mosaic(rng: np.random.Generator, side: int, length: int, height: int) -> np.ndarray:
    """At least ``height`` x ``length``: rows of :func:`clutter_strip`, cross-faded at their seams
    (one row, the strip itself, when a tile is at least ``height`` high)."""
    mosaic = clutter_strip(rng, side, length)
    overlap = max(1, int(side * _SEAM))
    fade = np.linspace(0.0, 1.0, overlap, dtype=np.float32)[:, None, None]
    while mosaic.shape[0] < height:
        row = clutter_strip(rng, side, length)
        row[:overlap] = mosaic[-overlap:] * (1 - fade) + row[:overlap] * fade
        mosaic = np.concatenate([mosaic[:-overlap], row])
    return mosaic


def world_bars(rng: np.random.Generator, length: int, width: int, sprite: int) -> list[tuple[int, int, np.ndarray]]:
    """``(x, w, colour)`` of occluding bars along a strip ``length`` long, 0.6-1.4 frame widths
    apart, each with its own width and colour (so no bar says which video it is in)."""
    bars, x = [], rng.uniform(0, width)
    while x < length:
        bars.append((int(x), max(2, int(sprite * rng.uniform(0.25, 0.45))), rng.uniform(40, 220, 3)))
        x += width * rng.uniform(0.6, 1.4)
    return bars


def render_video(number: int, frames: int, width: int, height: int, seed: int = 0,
                 background_motion: str = DEFAULT_BACKGROUND_MOTION,
                 background_speed: float = DEFAULT_BACKGROUND_SPEED,
                 background_tile: float = DEFAULT_BACKGROUND_TILE,
                 background_bar: str = DEFAULT_BAR) -> tuple[str, list[np.ndarray], np.ndarray]:
    """``(name, RGB frames, boxes (frames, 4) x, y, w, h)`` of synthetic video ``number``."""
    problems = background_problems(background_motion, background_speed, background_tile, background_bar)
    if problems:
        raise ValueError("synthetic video: " + "; ".join(problems))
    rng = np.random.default_rng([seed, _SEED_STREAM, number])
    name = video_name(rng)
    mesh = make_object(CATEGORIES[number % len(CATEGORIES)], rng)
    sprite = int(min(width, height) * rng.uniform(0.45, 0.65))
    raster = sprite * _SUPERSAMPLE

    # "drift": a background larger than the frame, drifted over by the camera. Drawn in
    # either mode, so the object's draws below are the same in both.
    side = int(max(width, height) * 1.3)
    background = clutter_background(rng, side)
    pan_start = rng.uniform(0, [side - width, side - height])
    pan_end = rng.uniform(0, [side - width, side - height])
    if background_motion == "pan":
        strip_rng = np.random.default_rng([seed, _SEED_STREAM, number, _BACKGROUND_STREAM])
        travel = background_speed * width * max(0, frames - 1)
        tile = int(max(width, height) * background_tile)
        background = clutter_mosaic(strip_rng, tile, width + int(np.ceil(travel)) + 1, height)
        row = strip_rng.uniform(0, background.shape[0] - height)
        pan_start, pan_end = np.array([0.0, row]), np.array([travel, row])
        if strip_rng.random() < 0.5:  # streaming right to left or left to right
            pan_start, pan_end = pan_end, pan_start

    # The object crosses the frame left to right or back, bobbing up and down.
    x_from, x_to = sprite * 0.45, width - sprite * 0.45
    if rng.random() < 0.5:
        x_from, x_to = x_to, x_from
    y_mid, y_swing, bob = height / 2, (height - sprite) * rng.uniform(0.1, 0.4), rng.uniform(1, 3)
    yaw_from = rng.uniform(0, 360)
    turn = rng.uniform(120, 360) * rng.choice([-1.0, 1.0])
    tilt = rng.uniform(5, 35)
    lamp_from = rng.uniform(-120, 0)
    lamp_swing = rng.uniform(90, 180)
    kelvin_from, kelvin_to = rng.uniform(2500, 4500), rng.uniform(5500, 9000)

    # An occluding bar across the object's path, about mid-way, striped so it is not one flat region.
    bar_x = int(width * rng.uniform(0.35, 0.65))
    bar_w = max(2, int(sprite * rng.uniform(0.25, 0.45)))
    bar_colour = rng.uniform(40, 220, 3)
    bar_shade = 0.75 + 0.25 * (np.arange(height)[:, None] % 8 < 4)
    bars = [(bar_x, bar_w, bar_colour)]  # in the frame's coordinates
    bars_in_world = background_motion == "pan" and background_bar == "world"
    if bars_in_world:  # in the strip's coordinates: they stream past with the background
        bars = world_bars(strip_rng, background.shape[1], width, sprite)

    images, boxes = [], np.zeros((frames, 4))
    for i in range(frames):
        t = i / max(1, frames - 1)
        pan = pan_start + (pan_end - pan_start) * t
        frame = background[int(pan[1]):int(pan[1]) + height, int(pan[0]):int(pan[0]) + width].astype(np.float32)

        pose = Pose(rotation=rotation_z(yaw_from + turn * t), scale=0.95)
        camera = Camera(elevation_deg=tilt)
        kelvin = kelvin_from + (kelvin_to - kelvin_from) * t
        lighting = Lighting(directions=direction(lamp_from + lamp_swing * t, 40.0)[None],
                            colours=(blackbody_rgb(kelvin) * 0.85)[None], ambient=0.2 * blackbody_rgb(kelvin))
        face_ids = rasterize(mesh, pose, camera, raster)
        covered = face_ids >= 0
        colours = np.take(shade(mesh, pose, lighting), np.where(covered, face_ids, 0), axis=0)
        colours = colours.astype(np.float32) * covered[..., None]
        # Shrinking the colour (premultiplied by coverage) and the coverage anti-aliases the edge.
        small = cv2.resize(colours, (sprite, sprite), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(covered.astype(np.float32), (sprite, sprite), interpolation=cv2.INTER_AREA)[..., None]

        centre_x = x_from + (x_to - x_from) * t
        centre_y = y_mid + y_swing * np.sin(2 * np.pi * bob * t)
        left, top = int(round(centre_x - sprite / 2)), int(round(centre_y - sprite / 2))
        fx0, fy0 = max(0, left), max(0, top)
        fx1, fy1 = min(width, left + sprite), min(height, top + sprite)
        if fx1 > fx0 and fy1 > fy0:
            sx0, sy0 = fx0 - left, fy0 - top
            region = frame[fy0:fy1, fx0:fx1]
            a = alpha[sy0:sy0 + fy1 - fy0, sx0:sx0 + fx1 - fx0]
            region[:] = region * (1 - a) + small[sy0:sy0 + fy1 - fy0, sx0:sx0 + fx1 - fx0]

        rows, cols = np.nonzero(covered)
        if len(rows):
            x0 = np.clip(left + cols.min() / _SUPERSAMPLE, 0, width)
            x1 = np.clip(left + (cols.max() + 1) / _SUPERSAMPLE, 0, width)
            y0 = np.clip(top + rows.min() / _SUPERSAMPLE, 0, height)
            y1 = np.clip(top + (rows.max() + 1) / _SUPERSAMPLE, 0, height)
            boxes[i] = (x0, y0, x1 - x0, y1 - y0)

        shift = int(pan[0]) if bars_in_world else 0
        for x, w, colour in bars:
            x0, x1 = max(0, x - shift), min(width, x - shift + w)
            if x1 > x0:
                frame[:, x0:x1] = (colour[None, None] * bar_shade[..., None]).astype(np.float32)
        images.append(np.clip(frame + 0.5, 0, 255).astype(np.uint8))
    return name, images, boxes


def shared_background(images: list[np.ndarray], boxes: np.ndarray, gap: int) -> float:
    """Mean Pearson correlation of the background pixels of frames ``gap`` apart, (z_i, z_{i+k})
    with i mod k == 0, at the same places: outside both frames' object boxes and outside
    pixels that never change (the occluding bar). 1: the pair shares its background (FTI's
    shortcut); about 0: nothing of it."""
    stack = np.stack(images).astype(np.float32)
    moving = np.any(stack != stack[:1], axis=(0, 3))  # the bar is the same in every frame
    values = []
    for i in range(0, len(images) - gap, gap):
        mask = moving.copy()
        for x, y, w, h in (boxes[i], boxes[i + gap]):
            mask[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))] = False
        a, b = stack[i][mask].ravel(), stack[i + gap][mask].ravel()
        if a.size > 1 and a.std() > 0 and b.std() > 0:
            values.append(float(np.corrcoef(a, b)[0, 1]))
    if not values:
        raise ValueError(f"no frame pair {gap} apart with background pixels in {len(images)} frames")
    return float(np.mean(values))


def _colour_histogram(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Square roots of the 8x8x8 RGB histogram of the ``mask`` pixels (dot products: Hellinger affinity)."""
    counts = cv2.calcHist([image], [0, 1, 2], mask.astype(np.uint8), [8, 8, 8], [0, 256] * 3).ravel()
    return np.sqrt(counts / max(1.0, counts.sum()))


def _region_mask(shape: tuple[int, int], box: np.ndarray, keep: np.ndarray, region: str) -> np.ndarray:
    x, y, w, h = box
    if region == "object":  # the box's central half: mostly the object
        mask = np.zeros(shape, bool)
        mask[int(y + h / 4):int(np.ceil(y + 3 * h / 4)), int(x + w / 4):int(np.ceil(x + 3 * w / 4))] = True
        return mask
    mask = keep.copy()
    mask[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))] = False
    return mask


RETRIEVAL_REGIONS = ("background", "background_no_bar", "object")


def video_retrieval(videos: list[tuple[list[np.ndarray], np.ndarray]], gap: int, region: str = "background") -> float:
    """How often a region's colour histogram alone finds z_i's video: of the z_{i+k} of every
    video (pairs with i mod k == 0), the one nearest to z_i (Hellinger affinity of 8x8x8 RGB
    histograms: translation-invariant, as random crops make a network) comes from z_i's video.
    Chance is about 1 / len(videos). Keys of other videos are the negatives MoCo's queue mostly
    holds, so with ``region="background"`` (outside the object's box) this is the part of
    FTI's InfoNCE task that needs no object; ``"background_no_bar"`` also leaves out pixels
    that never change (a bar standing still in the frame); ``"object"``: the box's central half."""
    if region not in RETRIEVAL_REGIONS:
        raise ValueError(f"region={region!r} must be one of {', '.join(RETRIEVAL_REGIONS)}")
    queries, keys, owner, query_frame, key_frame = [], [], [], [], []
    for number, (images, boxes) in enumerate(videos):
        stack = np.stack(images)
        keep = (np.any(stack != stack[:1], axis=(0, 3)) if region == "background_no_bar"
                else np.ones(stack.shape[1:3], bool))
        for i in range(0, len(images) - gap, gap):
            queries.append(_colour_histogram(images[i], _region_mask(keep.shape, boxes[i], keep, region)))
            keys.append(_colour_histogram(images[i + gap], _region_mask(keep.shape, boxes[i + gap], keep, region)))
            owner.append(number)
            query_frame.append(i)
            key_frame.append(i + gap)
    if not queries:
        raise ValueError(f"no frame pair {gap} apart in the videos")
    owner = np.array(owner)
    affinity = np.stack(queries) @ np.stack(keys).T
    # z_i is also the key of the pair (z_{i-k}, z_i): the same image is no second view of the video.
    same_image = (owner[:, None] == owner[None, :]) & (np.array(query_frame)[:, None] == np.array(key_frame)[None, :])
    nearest = np.where(same_image, -np.inf, affinity).argmax(1)
    return float((owner[nearest] == owner).mean())


def _write_video(number: int, root: Path, frames: int, width: int, height: int, seed: int,
                 background_motion: str, background_speed: float, background_tile: float, background_bar: str) -> str:
    name, images, boxes = render_video(number, frames, width, height, seed, background_motion, background_speed,
                                       background_tile, background_bar)
    folder = root / CHUNK_FOLDER / "frames" / name
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        if not cv2.imwrite(str(folder / f"{i}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"could not write {folder / f'{i}.jpg'}")
    lines = [f"{x:.2f},{y:.2f},{w:.2f},{h:.2f}" for x, y, w, h in boxes]
    (root / CHUNK_FOLDER / "anno" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return name


def write_trackingnet(root: Path, videos: int = 6, frames: int = 300, width: int = 160, height: int = 120,
                      seed: int = 0, processes: int | None = None,
                      background_motion: str = DEFAULT_BACKGROUND_MOTION,
                      background_speed: float = DEFAULT_BACKGROUND_SPEED,
                      background_tile: float = DEFAULT_BACKGROUND_TILE, background_bar: str = DEFAULT_BAR) -> Path:
    """Write ``videos`` synthetic videos in TrackingNet's layout under ``root``; return ``root``."""
    problems = background_problems(background_motion, background_speed, background_tile, background_bar)
    if problems:
        raise ValueError("synthetic video: " + "; ".join(problems))
    if videos < 1 or frames < 1:
        raise ValueError(f"need at least one video of one frame, got {videos} videos of {frames} frames")
    if width < 32 or height < 32:
        raise ValueError(f"frames must be at least 32x32, got {width}x{height}")
    root = Path(root)
    (root / CHUNK_FOLDER / "frames").mkdir(parents=True, exist_ok=True)
    (root / CHUNK_FOLDER / "anno").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    run_jobs(partial(_write_video, root=root, frames=frames, width=width, height=height, seed=seed,
                     background_motion=background_motion, background_speed=background_speed,
                     background_tile=background_tile, background_bar=background_bar),
             list(range(videos)), processes)
    log.info("wrote %d synthetic videos (%d frames, %dx%d, background %s) to %s in %.1f s",
             videos, frames, width, height, background_motion, root, time.perf_counter() - started)
    return root


def ensure_synthetic_trackingnet(videos: int, frames: int, width: int, height: int, seed: int = 0, cache: str = "",
                                 processes: int | None = None,
                                 background_motion: str = DEFAULT_BACKGROUND_MOTION,
                                 background_speed: float = DEFAULT_BACKGROUND_SPEED,
                                 background_tile: float = DEFAULT_BACKGROUND_TILE,
                                 background_bar: str = DEFAULT_BAR) -> Path:
    """The synthetic TrackingNet root (containing ``TRAIN_0/``), generated once into the cache.

    Its size has no default here: it is the ``synthetic-video`` source's (``datasets.sources.video``)."""
    problems = background_problems(background_motion, background_speed, background_tile, background_bar)
    if problems:
        raise ValueError("synthetic video: " + "; ".join(problems))
    background = {"background": background_folder(background_motion, background_speed, background_tile,
                                                  background_bar)} if background_motion == "pan" else {}
    key = cache_key("synthetic-trackingnet", GENERATOR_VERSION, videos=videos, frames=frames,
                    width=width, height=height, seed=seed, **background)
    return build_once(cache_root(cache) / key,
                      lambda tmp: write_trackingnet(tmp, videos, frames, width, height, seed, processes,
                                                    background_motion, background_speed, background_tile,
                                                    background_bar))


def background_folder(motion: str, speed: float, tile: float, bar: str) -> str:
    """The background's part of the cache folder name. Settings that render as an earlier
    version did keep its name ("drift": none; the first pan: ``pan0.25``), so its videos are reused."""
    if motion == "drift":
        return ""
    name = f"pan{speed:g}"
    if tile != OLD_BACKGROUND_TILE:
        name += f"-tile{tile:g}"
    if bar != "frame":
        name += f"-bar{bar}"
    return name
