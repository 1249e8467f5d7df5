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
                     help="restarts of a failed trial (its Train workers, or the trial itself) "
                          "from its last checkpoint (default: 0 locally, 3 on a cluster)")
    run.add_argument("-q", "--quiet", action="store_true", help="with --verbose: warnings only")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="Ray's, Tune's and Ray Data's own output on the terminal, as it comes, instead "
                          "of the progress view (by default it goes to sweep.log in the sweep's folder)")
    return parser


def run_cli(
    sweep: str,
    description: str,
    add_options: Callable[[argparse.ArgumentParser], None],
    search_space: Callable[[argparse.Namespace], dict[str, Any]],
    argv: list[str] | None = None,
    paper_table: str = "table1",
) -> int:
    """Parse, validate, run the sweep and print its summary; returns the exit status.

    `paper_table` names the published rows printed beside the sweep's RIS table
    (orchestrator.tables: "table1" image models, "table4" video models)."""
    from orchestrator.console import Console
    from orchestrator.paper_tables import PARENT_REPORTS
    from orchestrator.report import summary
    from orchestrator.search import sweep_selections
    from orchestrator.sweep import default_sweep_name, run_sweep

    parser = common_parser(description)
    add_options(parser.add_argument_group("search space"))
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.resume and not args.name:
        parser.error("--resume needs --name of the sweep to continue")
    try:
        space = search_space(args)
        start = preset(args.preset)
        # The sweep's own part selections first: --set may then name the data roles and
        # settings of the parts it trains (orchestrator.search.sweep_selections).
        base = start.override({**sweep_selections(start, space), **parse_overrides(args.overrides)})
        settings = SweepSettings(
            name=args.name or default_sweep_name(sweep),
            storage_path=args.storage_path,
            tracking_uri=args.tracking_uri,
            experiment=args.experiment,
            resume=args.resume,
            max_concurrent_trials=args.max_concurrent_trials,
            max_failures=args.max_failures,
            tags={"sweep_kind": sweep, "preset": args.preset},
            log_models=args.log_models,
            paper_table=paper_table,
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
    print(summary(outcome, paper_table))
    if sweep in PARENT_REPORTS and outcome.rows:
        print("\n" + PARENT_REPORTS[sweep].text(outcome.rows))
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    return 1 if outcome.errors else 0
