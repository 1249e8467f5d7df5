"""The video pipeline's command: the stages a sweep of the video methods builds, on their own.

Builds the frames, frame pairs and selective-search proposals (``datasets.video.pipeline``)
of the ``synthetic-video`` source's defaults (``--root``: the ``video`` source's), its fields
set as in a sweep's ``--set data.video.KEY=VALUE`` (``data.video.`` may be left out), pairs at
method ``fti``'s default frame gap k. It types a trial as a sweep does (the same parts,
defaults, parsing and checks), which is why it lives here, above ``datasets`` and
``trainables``.

    python -m orchestrator.video_pipeline                    # what a sweep builds on its defaults
    python -m orchestrator.video_pipeline --set videos=48 --frame-gap 13
    python -m orchestrator.video_pipeline --root /data/TrackingNet --set proposal_max_side=160
    python -m orchestrator.video_pipeline --list             # the cached stages and their keys
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from datasets.errors import DatasetFormatError
from datasets.registry import ConfigError
from datasets.video.config import VideoPipelineConfig
from datasets.video.pipeline import run_video_pipeline
from datasets.video.stages import format_stage_list, list_stages, stages_root
from trainables.config import TrialConfig

# The method whose pairs the command builds: its default frame gap k is the command's.
COMMAND_METHOD = "fti"
VIDEO_KEY = "data.video"  # the dotted section of the video source in a sweep's --set


def command_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="a TrackingNet or GOT-10k root or a folder of video files: the 'video' "
                                       "source (default: the 'synthetic-video' source, generated into the cache)")
    parser.add_argument("--format", help="with --root: auto, trackingnet, got10k or video-files")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a field of the video source, as a sweep's --set {VIDEO_KEY}.KEY=VALUE "
                             f"(either spelling), e.g. proposals_per_frame=50")
    parser.add_argument("--frame-gap", type=int, metavar="K",
                        help=f"k of the frame pairs (default: method {COMMAND_METHOD}'s frame_gap)")
    parser.add_argument("--cache", help="cache folder (default: $DSSL_CACHE_DIR or ~/.cache/demystify-ssl)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    parser.add_argument("--list", action="store_true", help="list the cached stages and exit")
    return parser


def command_config(args: argparse.Namespace) -> VideoPipelineConfig:
    """The config a sweep training :data:`COMMAND_METHOD` builds with these settings.
    Raises ``ValueError`` (a ``ConfigError``) with the sweep's sentences."""
    changes: dict[str, str] = {"method": COMMAND_METHOD}
    if args.root:
        changes.update({VIDEO_KEY: "video", f"{VIDEO_KEY}.root": args.root})
    if args.format:
        changes[f"{VIDEO_KEY}.format"] = args.format
    if args.cache:
        changes["data_cache"] = args.cache
    if args.frame_gap is not None:
        changes["method.frame_gap"] = str(args.frame_gap)
    for item in args.set:
        key, sep, value = item.partition("=")
        key = key.strip().removeprefix(f"{VIDEO_KEY}.")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        changes[f"{VIDEO_KEY}.{key}"] = value.strip()
    trial = TrialConfig().override(changes)
    problems = [p for p in trial.problems() if p.startswith((VIDEO_KEY, "method."))]
    if problems:
        raise ConfigError("invalid video pipeline settings:\n  " + "\n  ".join(problems))
    return trial.data["video"].pipeline_config(trial, trial.method.pipeline_frame_gap())


def main(argv: list[str] | None = None) -> int:
    args = command_parser().parse_args(argv)
    try:
        config = command_config(args)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    if args.list:
        print(f"cached video stages in {stages_root(config.data_cache)}:")
        print(format_stage_list(list_stages(config.data_cache)))
        return 0
    started = time.perf_counter()
    try:
        result = run_video_pipeline(config, args.num_cpus)
    except DatasetFormatError as error:  # a malformed root (e.g. GOT-10k's): the file and line, no traceback
        raise SystemExit(str(error)) from None
    print(f"done in {time.perf_counter() - started:.1f} s; stages computed: {', '.join(result.computed) or 'none'}")
    print(json.dumps(result.metrics(), indent=1))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
