"""The command line shared by every script in `sweeps/`.

A sweep script contributes only its search space: the options that name the values of
its knobs, and the function turning them into Ray Tune's nested ``param_space``
(orchestrator.search). Everything else (preset, overrides, storage, tracking, resume)
is common and lives here.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Any, Callable

from orchestrator.config import PRESETS, ConfigError, SweepSettings, parse_overrides, preset
from orchestrator.study import DEFAULT_SEEDS, TAG_STUDY

EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C (128 + SIGINT)


def common_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "With no arguments: local Ray, sqlite:///mlflow.db in this folder, synthetic data.\n"
            "On a cluster:  ray job submit --working-dir . -- python <this script> [options]"
        ),
    )
    run = parser.add_argument_group("run")
    run.add_argument("--preset", default="default", choices=sorted(PRESETS),
                     help="trial settings to start from (default: %(default)s)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one trial config key, e.g. --set epochs=5 or --set "
                          "method.queue_size=512 (repeatable, in any order: the selections "
                          "method=, invariances=, probes=, data.ROLE= apply before settings; "
                          "keys in docs/internals.md)")
    run.add_argument("--name", default="", help="sweep name (default: <sweep>-<time>)")
    run.add_argument("--resume", action="store_true",
                     help="continue the sweep --name: unfinished and failed trials resume "
                          "from their last checkpoint, logging into the same MLflow runs")
    run.add_argument("--storage-path", default="",
                     help="where Tune and Train keep results and checkpoints "
                          "(default: ./ray_results; use shared storage on multi-node clusters)")
    run.add_argument("--tracking-uri", default="",
                     help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    run.add_argument("--experiment", default="demystify-ssl", help="MLflow experiment name")
    run.add_argument("--register-model", default="", metavar="NAME",
                     help="also register each trial's logged backbone in MLflow's model registry "
                          "under NAME (a new version per trial)")
    run.add_argument("--no-log-models", dest="log_models", action="store_false",
                     help="do not log each trial's final backbone as an MLflow model")
    run.add_argument("--max-concurrent-trials", type=int, default=0,
                     help="0: as many as local resources allow; no limit on a cluster")
    run.add_argument("--max-failures", type=int, default=None,
                     help="restarts of a trial's failed Train run from its last checkpoint; "
                          "config and data errors are never retried (default: 0 locally, 3 on a cluster)")
    run.add_argument("-q", "--quiet", action="store_true", help="with --verbose: warnings only")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="Ray's, Tune's and Ray Data's own output on the terminal, as it comes, instead "
                          "of the progress view (by default it goes to sweep.log in the sweep's folder)")
    return parser


def add_study_options(parser: argparse.ArgumentParser, study) -> tuple[bool, list[int] | None]:
    """``--study`` and, unless the sweep has its own, ``--seeds``; returns whether the sweep
    has its own ``--seeds`` and its default (which applies without --study)."""
    group = parser.add_argument_group("study")
    group.add_argument("--study", action="store_true",
                       help=f"run as a study: arms {', '.join(study.arms)} of {study.knob} x seeds "
                            f"(default {' '.join(map(str, DEFAULT_SEEDS))}) plus an epochs=0 (random "
                            "initialisation) row each, with the study's settings (then --set); prints "
                            "and logs a verdict per claim (README, Studies)")
    own_default = parser.get_default("seeds")
    try:
        group.add_argument("--seeds", nargs="+", type=int, default=None, metavar="S",
                           help="with --study: the paired seeds (default: %s)" % " ".join(map(str, DEFAULT_SEEDS)))
        has_own = False
    except argparse.ArgumentError:  # the sweep's search space has --seeds already
        has_own = True
    parser.set_defaults(seeds=None)  # None after parsing: not given on the command line
    return has_own, own_default


def study_verdict(outcome, study) -> str:
    """Log the verdict on the sweep's parent run (read back from its child runs) and return
    the lines to print; MLflow failing leaves a line saying so, not a lost summary."""
    from mlflow.tracking import MlflowClient

    from orchestrator.study import log_verdict, verdict_text
    from orchestrator.tracking.keys import TAG_PARENT

    try:
        client = MlflowClient(tracking_uri=outcome.tracking_uri)
        children = client.search_runs([outcome.experiment_id], max_results=10000,
                                      filter_string=f"tags.`{TAG_PARENT}` = '{outcome.parent_run_id}'")
        result = log_verdict(client, outcome.parent_run_id, study, children, outcome.name)
    except Exception as err:  # noqa: BLE001 - the sweep's results stand; the verdict can be rebuilt
        return (f"Study verdict not written ({type(err).__name__}: {err}); rebuild it with: "
                f"python -m orchestrator.study {outcome.parent_run_id} --tracking-uri {outcome.tracking_uri}")
    return (verdict_text(result) + "\nOn the parent run: tables/verdict.md, tables/paired_differences.png; "
            f"rebuild: python -m orchestrator.study {outcome.name}")


def run_cli(
    sweep: str,
    description: str,
    add_options: Callable[[argparse.ArgumentParser], None],
    search_space: Callable[[argparse.Namespace], dict[str, Any]],
    argv: list[str] | None = None,
    tables=None,
    study=None,
) -> int:
    """Parse, validate, run the sweep and print its summary; returns the exit status.

    `tables` are the tables the sweep's parent run gets and the summary prints
    (orchestrator.table_spec declarations; default: the paper's Table 1 layout, from
    orchestrator.paper_tables). A sweep that is
    also a study (`study`: an orchestrator.study.Study) gets ``--study`` (and ``--seeds``
    where it has none): its arms x seeds and epochs=0 rows, its settings, and the verdict
    printed and logged at the end."""
    from orchestrator.console import Console
    from orchestrator.paper_tables import TABLE1
    from orchestrator.report import summary
    from orchestrator.search import sweep_selections
    from orchestrator.sweep import default_sweep_name, run_sweep

    tables = tuple(tables or (TABLE1,))
    parser = common_parser(description)
    add_options(parser.add_argument_group("search space"))
    own_seeds, sweep_seeds = add_study_options(parser, study) if study is not None else (False, None)
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.resume and not args.name:
        parser.error("--resume needs --name of the sweep to continue")
    studying = study is not None and args.study
    if study is not None:
        if args.seeds is not None and not (studying or own_seeds):
            parser.error("--seeds needs --study")
        if args.seeds is None:  # not given: the study's seeds, or the sweep's own default
            args.seeds = list(DEFAULT_SEEDS) if studying else sweep_seeds
    tags = {"sweep_kind": sweep, "preset": args.preset}
    try:
        space = search_space(args)
        start = preset(args.preset)
        # The sweep's own part selections first: --set may then name the data roles and
        # settings of the parts it trains (orchestrator.search.sweep_selections).
        start = start.override(sweep_selections(start, space))
        if studying:
            base, space = study.plan(start, space, parse_overrides(args.overrides), args.seeds)
            tags[TAG_STUDY] = study.to_json()
        else:
            base = start.override(parse_overrides(args.overrides))
        settings = SweepSettings(
            name=args.name or default_sweep_name(sweep),
            storage_path=args.storage_path,
            tracking_uri=args.tracking_uri,
            experiment=args.experiment,
            resume=args.resume,
            max_concurrent_trials=args.max_concurrent_trials,
            max_failures=args.max_failures,
            tags=tags,
            log_models=args.log_models,
            tables=tables,
            register_model=args.register_model,
        )
        with contextlib.nullcontext() if args.verbose else Console():
            outcome = run_sweep(base, space, settings)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the sweep's runs are marked KILLED", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(summary(outcome, tables))
    if studying and outcome.rows:
        print("\n" + study_verdict(outcome, study))
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    return 1 if outcome.errors else 0
