"""benchmarks/bench_gpu.py's smoke mode (every part, toy sizes, CPU), its guards, and the
GPU path's decisions, which run here with fake inputs (no GPU needed)."""
from __future__ import annotations

import json
import time

import pytest
import torch

from benchmarks import bench_gpu
from datasets.placement import gpu_actors
from trainables.pretrain import device_settings

IN_PROCESS = ("step", "data", "ris", "compile")  # the parts without Ray


def test_device_settings_mixed_precision_layout_and_memory_follow_the_device():
    bf16 = device_settings("cuda", bf16_supported=True)
    assert bf16.amp and bf16.amp_dtype == torch.bfloat16 and not bf16.loss_scaling  # bf16 has fp32's range
    assert bf16.channels_last and bf16.pin_memory and bf16.cudnn_benchmark
    fp16 = device_settings("cuda", bf16_supported=False)  # e.g. a V100 or T4
    assert fp16.amp and fp16.amp_dtype == torch.float16 and fp16.loss_scaling
    cpu = device_settings("cpu", bf16_supported=True)
    assert not (cpu.amp or cpu.loss_scaling or cpu.channels_last or cpu.pin_memory or cpu.cudnn_benchmark)


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
def test_a_resumed_optimizer_keeps_its_state_on_the_parameters_device(tmp_path, one_torch_thread):
    """The "meta" device stands in for a GPU: SGD's momentum buffers must follow the
    parameters there (loaded before the move, they stayed on the CPU: the first step after
    a resume on a GPU failed)."""
    from trainables.config import TrialConfig
    from trainables.pretrain import save_checkpoint, setup_training

    trial = TrialConfig().override({"image_size": 32, "batch_size": 4, "method.queue_size": 8, "method.dim": 8})
    model, optimizer, scheduler, first = setup_training(trial, torch.device("cpu"), device_settings("cpu"))
    assert first == 0
    x = torch.randn(4, 3, 32, 32)
    trial.method.training_step(model, (x, x), None).loss.backward()
    optimizer.step()  # creates the momentum buffers
    save_checkpoint(tmp_path / "checkpoint.pt", model, optimizer, scheduler, epoch=0)

    model, optimizer, _, first = setup_training(trial, torch.device("meta"), device_settings("cpu"),
                                                tmp_path / "checkpoint.pt")
    assert first == 1 and {p.device.type for p in model.parameters()} == {"meta"}
    buffers = [state["momentum_buffer"] for state in optimizer.state.values()]
    assert buffers and {b.device.type for b in buffers} == {"meta"}


def test_feature_actors_ask_for_gpus_only_where_some_exist_or_may_be_added():
    assert gpu_actors(True, autoscaling=False, cluster_resources={"CPU": 16.0, "GPU": 1.0})
    assert not gpu_actors(True, autoscaling=False, cluster_resources={"CPU": 2.0})  # a laptop: pending forever otherwise
    assert gpu_actors(True, autoscaling=True, cluster_resources={"CPU": 2.0})  # the autoscaler brings GPU nodes
    assert not gpu_actors(False, autoscaling=True, cluster_resources={"CPU": 16.0, "GPU": 8.0})


def test_smoke_runs_every_in_process_part_and_writes_what_it_printed(tmp_path, capsys, one_torch_thread):
    out = tmp_path / "gpu.json"
    figures = bench_gpu.run(smoke=True, out=out, parts=IN_PROCESS, budget_s=3600)  # a loaded CI machine
    assert json.loads(out.read_text()) == json.loads(json.dumps(figures, default=str))
    printed = capsys.readouterr().out
    assert "step/fp32_nchw/images_per_second: " in printed and figures["mode"].startswith("smoke")
    for amp, channels_last in bench_gpu.STEP_GRID:
        assert figures[f"step/{bench_gpu.settings_name(amp, channels_last)}/images_per_second"] > 0
    for key in ("data/cpu_augment/images_per_second", "data/fed_step_fp32_nchw/images_per_second",
                "data/gpu_augment/images_per_second", "data/gpu_augment_fed_step_fp32_nchw/images_per_second"):
        assert figures[key] > 0, key
    compiled = [k for k in figures if k.startswith("compile/") and k.endswith("_compiled/images_per_second")]
    assert len(compiled) == bench_gpu.SMOKE.compile_configs and figures[compiled[0]] > 0
    assert figures["ris/cpu_s"] > 0 and 0 <= figures["ris/top10"] <= 100
    assert not any(k.endswith(("/error", "/cut", "/skipped")) for k in figures)


def test_a_failing_part_is_reported_and_the_next_one_still_runs(tmp_path, monkeypatch, capsys):
    def broken(report, ctx):
        report.add("step/partial", 1.0)
        raise ValueError("no such kernel")

    monkeypatch.setitem(bench_gpu.PART_FUNCTIONS, "step", broken)
    out = tmp_path / "gpu.json"
    assert bench_gpu.main(["--smoke", "--parts", "step,ris", "--out", str(out)]) == 1
    figures = json.loads(out.read_text())
    assert figures["step/partial"] == 1.0 and figures["step/error"] == "ValueError: no such kernel"
    assert figures["ris/cpu_s"] > 0  # the part after the broken one ran
    captured = capsys.readouterr()
    assert "Traceback" in captured.err and "parts failed: step" in captured.err


def test_the_budget_cuts_an_overrunning_part_and_skips_the_rest(tmp_path, monkeypatch):
    def slow(report, ctx):
        report.add("step/started", True)
        time.sleep(30)
        report.add("step/finished", True)

    monkeypatch.setitem(bench_gpu.PART_FUNCTIONS, "step", slow)
    start = time.monotonic()
    figures = bench_gpu.run(smoke=True, out=tmp_path / "gpu.json", budget_s=1.0, parts=("step", "ris"))
    assert time.monotonic() - start < 20
    assert figures["step/started"] and "step/finished" not in figures and "deadline" in figures["step/cut"]
    assert figures["ris/skipped"] == "budget" and "ris/cpu_s" not in figures


def test_unknown_parts_are_refused_before_any_work(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_gpu.main(["--smoke", "--parts", "step,warp"])
    assert exit_info.value.code == 2 and "warp" in capsys.readouterr().err


@pytest.mark.slow
def test_smoke_ray_parts_train_the_paper_preset_and_extract_features(tmp_path, ray_session):
    figures = bench_gpu.run(smoke=True, out=tmp_path / "gpu.json", parts=("train", "features"), budget_s=3600)
    assert figures["train/steps"] == bench_gpu.SMOKE.train_steps
    assert figures["train/images_per_second_first_epoch"] > 0 and figures["train/final_loss"] > 0
    assert figures["features/ray_data_images_per_second"] > 0 and figures["features/dataloader_images_per_second"] > 0
