"""Benchmark: what the GOT-10k reader's checks cost on the driver (issue 22).

The video pipeline lists a GOT-10k root at every call (``discover_videos``: the folders
``list.txt`` names, each checked to exist, and their stamps), on the driver and again on
each worker that looks up the cached stages; reading every sequence whole
(``check_sources``: each ``groundtruth.txt`` parsed, each folder's frames listed and
checked against it) runs once, before the frames stage decodes. This writes a tree in
GOT-10k's layout (empty frame files, ``groundtruth.txt`` of one box per frame) and times
both, best of ``repeats``.

    python -m benchmarks.bench_got10k_reader [--sequences 500] [--frames 100]
    python -m benchmarks.run got10k_reader
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.machine import best_of
from datasets.got10k import GROUNDTRUTH, LIST_FILE, frame_name, sequence_name
from datasets.video.sources import check_sources, discover_videos

# GOT-10k train: 9,335 sequences of about 150 frames (reference/datasets.md); a sample of it.
SEQUENCES = 500
FRAMES = 100


def write_tree(root: Path, sequences: int, frames: int) -> Path:
    split = root / "train"
    for number in range(1, sequences + 1):
        folder = split / sequence_name("train", number)
        folder.mkdir(parents=True)
        for index in range(frames):
            (folder / frame_name(index)).touch()
        (folder / GROUNDTRUTH).write_text("".join(f"{i}.0000,{i}.0000,30.0000,20.0000\n" for i in range(frames)))
    (split / LIST_FILE).write_text("".join(f"{sequence_name('train', n)}\n" for n in range(1, sequences + 1)))
    return root


def run(sequences: int = SEQUENCES, frames: int = FRAMES, repeats: int = 3) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        root = write_tree(Path(folder), sequences, frames)
        videos = discover_videos(root)
        assert len(videos) == sequences
        listing = best_of(repeats, lambda: discover_videos(root))
        whole = best_of(repeats, lambda: check_sources(videos))
    result = {"tree": f"{sequences} sequences x {frames} frames",
              "discover_videos_s": round(listing, 4), "check_sources_s": round(whole, 4),
              "check_sources_ms_per_sequence": round(1000 * whole / sequences, 3)}
    print(result)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=SEQUENCES)
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    return run(args.sequences, args.frames, args.repeats)


if __name__ == "__main__":
    main()
