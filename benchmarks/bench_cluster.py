"""Benchmark: what Tune + Train cost over a plain torch loop, and a sweep's throughput.

- `tune_train_seconds`: one trial's pretraining as a sweep runs it: a Tune function
  trainable (the sweep's trial-driver resources) building the sweep's TorchTrainer (one
  worker, checkpoint every epoch) on local Ray, timed around `Tuner.fit()` (trial
  scheduling, worker start, data loading, reports and checkpoints included);
- `plain_loop_seconds`: the same pretraining (same model, loader, optimiser, schedule,
  epochs, a checkpoint per epoch) as a plain loop in this process, same torch threads;
- `sweep_trials_per_hour`: the crop-scale sweep (pretraining + evaluation per trial) with
  `--max-concurrent-trials` 1 and 2 on this machine.

Both timings run in one process, one after the other, on the same synthetic data.

`--study-trial` measures one study trial instead (the crop-scale study's settings,
`sweeps/crop_scale.py` STUDY, arm 0.4): the sweep's own trainable
(`trainables.trial.pretrain_and_evaluate`: the Train run, then the evaluation task) in a
Tune trial with the sweep's driver resources, timed around `Tuner.fit()`, against a plain
loop doing the same training and the same evaluation (`trainables.evaluation.evaluate` in
this process, same torch threads), alternating which runs first.

    python -m benchmarks.bench_cluster [--preset default] [--trials 2] [--set KEY=VALUE ...]
    python -m benchmarks.bench_cluster --study-trial [--repeats 2]
    python -m benchmarks.run cluster
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.machine import command_line, machine
from orchestrator.config import SweepSettings, parse_overrides, preset


def plain_loop(trial, folder: Path, evaluate: bool = False) -> float:
    """The pretraining of `trainables.pretrain.train_loop_per_worker`, without Ray (a
    checkpoint every `checkpoint_every` epochs and at the last, as it saves them); with
    `evaluate`, then the evaluation stage's metrics of the trained backbone, in process."""
    from trainables.methods.base import step_output
    from trainables.pretrain import build_model, build_optimizer, cpu_split, pretrain_loader, save_checkpoint

    threads, loader_workers = cpu_split(trial.cpus_per_worker, torch.device("cpu"))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    start = time.perf_counter()
    model = build_model(trial)
    optimizer, scheduler = build_optimizer(model, trial)
    loader = pretrain_loader(trial, 1, 0, loader_workers)
    step, total = 0, trial.epochs * len(loader)
    for epoch in range(trial.epochs):
        loader.sampler.set_epoch(epoch)
        model.train()
        for inputs, labels, _ in loader:
            loss = step_output(trial.method.training_step(model, inputs, labels)).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            trial.method.on_step_end(model, step, total)
        scheduler.step()
        if epoch == trial.epochs - 1 or (epoch + 1) % trial.checkpoint_every == 0:
            save_checkpoint(folder / f"plain-{epoch}.pt", model, optimizer, scheduler, epoch)
    if evaluate:
        from trainables.evaluation import evaluate as evaluate_backbone

        evaluate_backbone(trial.method.backbone(model).eval(), trial, "cpu")
    torch.set_num_threads(previous)
    return time.perf_counter() - start


def _pretrain_only(config: dict, storage_path: str) -> None:
    from trainables.config import TrialConfig
    from trainables.trial import pretrain_trainer

    pretrain_trainer(TrialConfig.from_nested(config), storage_path).fit()


def tune_train(trial, folder: Path) -> tuple[float, float]:
    """One Tune trial running the sweep's Train run (no evaluation), timed around fit();
    with the last epoch's images/s as the Train run measured it."""
    from ray import tune

    from orchestrator.sweep import TRIAL_DRIVER_RESOURCES

    trainable = tune.with_resources(tune.with_parameters(_pretrain_only, storage_path=str(folder)),
                                    TRIAL_DRIVER_RESOURCES)
    name = f"overhead-{time.monotonic_ns()}"
    tuner = tune.Tuner(trainable, param_space=trial.to_nested(),
                       run_config=tune.RunConfig(name=name, storage_path=str(folder), verbose=0))
    start = time.perf_counter()
    results = tuner.fit()
    elapsed = time.perf_counter() - start
    if results.errors:
        raise RuntimeError(f"the Tune + Train trial failed: {results.errors[0]}")
    return elapsed, float(results[0].metrics.get("pretrain/images_per_second", float("nan")))


def tune_study_trial(trial, folder: Path) -> float:
    """One Tune trial running the sweep's trainable (Train run + evaluation task) with the
    sweep's driver resources, timed around fit()."""
    from ray import tune

    from orchestrator.sweep import TRIAL_DRIVER_RESOURCES
    from trainables.trial import pretrain_and_evaluate

    trainable = tune.with_resources(tune.with_parameters(pretrain_and_evaluate, storage_path=str(folder)),
                                    TRIAL_DRIVER_RESOURCES)
    tuner = tune.Tuner(trainable, param_space=trial.to_nested(),
                       run_config=tune.RunConfig(name=f"study-trial-{time.monotonic_ns()}",
                                                 storage_path=str(folder), verbose=0))
    start = time.perf_counter()
    results = tuner.fit()
    elapsed = time.perf_counter() - start
    if results.errors:
        raise RuntimeError(f"the study trial failed: {results.errors[0]}")
    if "probe/linear_top1" not in results[0].metrics:
        raise RuntimeError("the study trial reported no evaluation")
    return elapsed


def study_trial(repeats: int = 2) -> dict:
    """`repeats` pairs of (Tune + Train + evaluation task, plain loop + in-process
    evaluation) of one crop-scale study trial, the order alternating."""
    import os

    from datasets.ray_connection import init_ray
    from orchestrator.sweep import prepare_data
    from sweeps.crop_scale import STUDY

    trial = preset("default").override(STUDY.settings | {STUDY.knob: STUDY.arms[0]})
    prepare_data([trial])  # generated before any timing
    init_ray(num_cpus=2, quiet=True)
    pairs, loads = [], []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for i in range(repeats):
            loads.append(round(os.getloadavg()[0], 1))
            if i % 2 == 0:
                tune_s, plain_s = tune_study_trial(trial, folder), plain_loop(trial, folder, evaluate=True)
            else:
                plain_s = plain_loop(trial, folder, evaluate=True)
                tune_s = tune_study_trial(trial, folder)
            pairs.append((tune_s, plain_s))
            print(f"one study trial ({'Tune' if i % 2 == 0 else 'plain'} first, load {loads[-1]}): Tune + Train + "
                  f"evaluation {tune_s:.1f} s, plain loop + evaluation {plain_s:.1f} s: {tune_s / plain_s:.2f}x",
                  flush=True)
    result = {
        "machine": machine() + " (shared with other jobs)",
        "command": command_line(),
        "settings": f"crop-scale STUDY, {STUDY.knob}={STUDY.arms[0]}, epochs={trial.epochs}",
        "load_average_at_start": loads,
        "tune_train_evaluation_seconds": [round(t, 1) for t, _ in pairs],
        "plain_loop_evaluation_seconds": [round(p, 1) for _, p in pairs],
        "ratio": [round(t / p, 3) for t, p in pairs],
    }
    print(json.dumps(result, indent=2))
    return result


def sweep_throughput(base, trials: int, concurrency: int, folder: Path) -> float:
    """Trials per hour of a crop-scale sweep of `trials` trials at `concurrency`."""
    from ray import tune

    from orchestrator.sweep import run_sweep

    folder.mkdir(parents=True, exist_ok=True)
    mins = [0.08, 0.2, 0.5, 0.9][:trials]
    space = {"method": {"crop_scale_min": tune.grid_search(mins), "crop_scale_max": 1.0}}
    settings = SweepSettings(name=f"throughput-{concurrency}", storage_path=str(folder / "results"),
                             tracking_uri=f"sqlite:///{folder}/mlflow.db", experiment="throughput",
                             max_concurrent_trials=concurrency, log_models=False)
    start = time.perf_counter()
    outcome = run_sweep(base, space, settings)
    elapsed = time.perf_counter() - start
    if outcome.errors:
        raise RuntimeError(f"sweep failed: {outcome.errors[0]}")
    return trials / elapsed * 3600


def run(preset_name: str = "default", overrides: list[str] | None = None, trials: int = 2,
        concurrencies: tuple[int, ...] = (1, 2), repeats: int = 2) -> dict:
    """`repeats` pairs of (Tune + Train, plain loop), the order alternating, then the sweeps."""
    from datasets.ray_connection import init_ray
    from orchestrator.sweep import prepare_data

    trial = preset(preset_name).override(parse_overrides(overrides or []))
    prepare_data([trial])  # generated before any timing
    init_ray(num_cpus=2, quiet=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        pairs = []
        for i in range(repeats):
            if i % 2 == 0:
                (tune_s, train_rate), plain_s = tune_train(trial, folder), plain_loop(trial, folder)
            else:
                plain_s = plain_loop(trial, folder)
                tune_s, train_rate = tune_train(trial, folder)
            pairs.append((tune_s, plain_s, train_rate))
            print(f"one trial's pretraining: Tune + Train {tune_s:.1f} s ({train_rate:.1f} images/s in the "
                  f"last epoch), plain loop {plain_s:.1f} s: {tune_s / plain_s:.2f}x", flush=True)
        # Full global batches only (drop_last), as both loops train.
        images = trial.epochs * (trial.data["pretrain"].num_images("train") // trial.batch_size) * trial.batch_size
        throughput = {}
        for c in concurrencies:
            throughput[c] = sweep_throughput(trial, trials, c, folder / f"c{c}")
            print(f"sweep of {trials} trials at concurrency {c}: {throughput[c]:.1f} trials/hour", flush=True)
    result = {
        "machine": machine() + " (shared with other jobs)",
        "command": command_line(),
        "preset": preset_name,
        "overrides": overrides or [],
        "epochs": trial.epochs,
        "tune_train_seconds": [round(t, 1) for t, _, _ in pairs],
        "plain_loop_seconds": [round(p, 1) for _, p, _ in pairs],
        "tune_train_over_plain": [round(t / p, 3) for t, p, _ in pairs],
        "train_last_epoch_images_per_second": [round(r, 1) for _, _, r in pairs],
        "plain_loop_images_per_second": [round(images / p, 1) for _, p, _ in pairs],
        "sweep_trials": trials,
        **{f"sweep_trials_per_hour_concurrency_{c}": round(v, 1) for c, v in throughput.items()},
    }
    print(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--trials", type=int, default=2, help="trials per throughput sweep (1-4)")
    parser.add_argument("--repeats", type=int, default=2, help="(Tune + Train, plain loop) pairs")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 2],
                        help="sweep concurrencies to measure (none: skip the sweeps)")
    parser.add_argument("--study-trial", action="store_true",
                        help="one crop-scale study trial (training + evaluation) instead, against a plain loop")
    args = parser.parse_args()
    if args.study_trial:
        study_trial(args.repeats)
        return
    run(args.preset, args.overrides, args.trials, tuple(args.concurrency), args.repeats)


if __name__ == "__main__":
    main()
