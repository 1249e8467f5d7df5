"""Benchmark: the tiny sweep with its checkpoints and data cache on an S3-compatible object
store (moto's server on 127.0.0.1, reached through AWS_ENDPOINT_URL as MinIO or Ceph
would be) against the same sweep on local disk, as a wall-time ratio measured in one run.

Each sweep is one trial of the tests' tiny config (tests/tiny.py) from an empty data
cache: data generated (and, on the store, uploaded), two epochs checkpointed, features
extracted and cached. The two kinds alternate, `repeats` of each, in one Ray instance.

    python -m benchmarks.bench_object_store
    python -m benchmarks.run object_store
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.machine import command_line, machine


def _sweep(base, storage: str, data_cache: str, name: str, tracking_uri: str) -> float:
    from orchestrator.config import SweepSettings
    from orchestrator.sweep import run_sweep

    started = time.perf_counter()
    outcome = run_sweep(base.override({"data_cache": data_cache}), {},
                        SweepSettings(name=name, storage_path=storage, tracking_uri=tracking_uri, experiment=name))
    if outcome.errors:
        raise RuntimeError(f"sweep {name} failed: {outcome.errors}")
    return time.perf_counter() - started


def run(repeats: int = 2) -> dict:
    import boto3
    from moto.server import ThreadedMotoServer

    from datasets.ray_connection import init_ray
    from tests.tiny import tiny_config

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    saved = dict(os.environ)
    os.environ.update({"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"})
    try:
        boto3.client("s3").create_bucket(Bucket="bench")
        init_ray(num_cpus=2, quiet=True)
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            uri = f"sqlite:///{folder}/mlflow.db"
            base = tiny_config("").override({"invariances": "viewpoint"})
            times: dict[str, list[float]] = {"local": [], "s3": []}
            for i in range(repeats):
                order = ("local", "s3") if i % 2 == 0 else ("s3", "local")
                for kind in order:
                    # A new local mirror of the store's cache each time (datasets.cache).
                    os.environ["DSSL_CACHE_DIR"] = str(folder / f"mirror-{kind}-{i}")
                    if kind == "local":
                        seconds = _sweep(base, str(folder / f"results-{i}"), str(folder / f"cache-{i}"),
                                         f"local{i}", uri)
                    else:
                        seconds = _sweep(base, f"s3://bench/results-{i}", f"s3://bench/cache-{i}", f"s3{i}", uri)
                    times[kind].append(seconds)
                    print(f"tiny sweep, {kind}: {seconds:.1f} s", flush=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()
    local, s3 = statistics.median(times["local"]), statistics.median(times["s3"])
    return {
        "machine": machine() + " (shared with other jobs)",
        "command": command_line(),
        "repeats": repeats,
        "local_seconds": [round(t, 1) for t in times["local"]],
        "s3_seconds": [round(t, 1) for t in times["s3"]],
        "local_median_s": round(local, 1),
        "s3_median_s": round(s3, 1),
        "s3_over_local": round(s3 / local, 2),
    }


if __name__ == "__main__":
    from benchmarks.run import format_table

    print(format_table("object_store", run()))
