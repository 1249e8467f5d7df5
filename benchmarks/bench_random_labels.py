"""Pilot of the transfer-reuse study (sweeps/transfer_reuse.py): does random-label
pretraining pass the study's loss gate, and how far does training move the first layer's
alignment (``analysis/first_layer_alignment``)?

The study's own trial settings (its ``STUDY.plan``, seed 0), trained in a plain loop in this
process (no Ray, no evaluation stage, the same model, data, optimiser, schedule and
per-epoch seeding as the Train loop) for ``--epochs``; prints the epoch-mean training loss
every 20 epochs, the final one against the gate's ln(C) - margin, and the alignment of the
initial and trained weights on the alignment part's fixed image sample.

    python -m benchmarks.bench_random_labels --epochs 120 --methods supervised_random_labels
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def study_trials(seed: int):
    sys.path.insert(0, str(REPO / "sweeps"))
    import transfer_reuse

    from orchestrator.config import preset
    from orchestrator.search import trials_of

    parser = argparse.ArgumentParser()
    transfer_reuse.options(parser)
    args = parser.parse_args([])
    args.study, args.seeds = True, [seed]
    base, space = transfer_reuse.STUDY.plan(preset("default"), transfer_reuse.search_space(args), {}, [seed])
    return transfer_reuse.STUDY, [t for t in trials_of(base, space)[1] if t.epochs]


def pilot(trial, loss_margin: float) -> dict:
    from trainables.alignment import first_layer_alignment
    from trainables.augment import eval_transform
    from trainables.pretrain import build_model, build_optimizer, pretrain_loader, seed_everything
    from trainables.probes.alignment import AlignmentProbe

    model = build_model(trial)
    optimizer, scheduler = build_optimizer(model, trial)
    images = AlignmentProbe().sample(trial.root("pretrain"), eval_transform(trial.image_size))
    before = first_layer_alignment(model.backbone, images)
    loader = pretrain_loader(trial, 1, 0, 0)
    start = time.perf_counter()
    for epoch in range(trial.epochs):
        seed_everything(trial.seed, 0, epoch)
        loader.sampler.set_epoch(epoch)
        model.train()
        total = count = 0
        for inputs, labels, _ in loader:
            loss = trial.method.training_step(model, inputs, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(labels), count + len(labels)
        scheduler.step()
        if epoch % 20 == 19:
            print(f"{trial.method.name} epoch {epoch + 1}: loss {total / count:.3f}", flush=True)
    classes = int(trial.flat()["data.pretrain.classes"])
    after = first_layer_alignment(model.eval().backbone, images)
    wall = time.perf_counter() - start
    print(f"{trial.method.name}: {trial.epochs * len(loader)} steps, final loss {total / count:.3f} "
          f"(gate: below ln({classes}) - {loss_margin:g} = {math.log(classes) - loss_margin:.3f}); "
          f"alignment initial {before:.4f}, trained {after:.4f}; {wall:.0f} s", flush=True)
    return {"steps": trial.epochs * len(loader), "final_loss": total / count,
            "loss_bound": math.log(classes) - loss_margin, "alignment_initial": before,
            "alignment_trained": after, "wall_s": wall}


def run(epochs: int = 0, seed: int = 0, methods: tuple[str, ...] = ("supervised", "supervised_random_labels")) -> dict:
    """Each method's figures (`pilot`), keyed ``<method>/<figure>``; `epochs` 0: the study's."""
    torch.set_num_threads(2)
    study, trials = study_trials(seed)
    out = {}
    for trial in trials:
        if trial.method.name in methods:
            figures = pilot(trial.override({"epochs": epochs}) if epochs else trial, study.loss_margin)
            out |= {f"{trial.method.name}/{key}": value for key, value in figures.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=0, help="default: the study's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=["supervised", "supervised_random_labels"],
                        help="supervised methods of the study (default: %(default)s)")
    args = parser.parse_args()
    run(args.epochs, args.seed, tuple(args.methods))


if __name__ == "__main__":
    main()
