"""What an experiment tracker costs a training run (not a timed test; figures printed and saved as JSON).

The SST-2 speed setting of bench/sst2.py (bundled MiniLM, max length 128, batch 32, lr 5e-5, --steps optimizer steps)
trained with train.report_to empty and with each tracker: tensorboard, mlflow (a real `mlflow server` on loopback with
a SQLite store, started here) and wandb (offline). Every run is its own process; the variants alternate over
--repeats rounds so drift on a shared machine falls on all of them. The training log is written every --log-every
steps (the default is 50; 10 here puts five times the default's tracking traffic on the run). Reported per variant:
median wall time of the whole `train` call and median training samples/s, and the ratio of each to no tracker.
Target: <= 2 % slower.

Usage: python bench/tracking.py [--steps 150] [--repeats 3] [--log-every 10] [--trackers tensorboard,mlflow,wandb]
Reads ../shared/data/sst2 (or $TRANSFERLM_DATA/sst2); exits 0 with a message when it is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TRANSFERLM_DATA", ROOT.parent / "shared" / "data")) / "sst2"

ONE_RUN = """
import json, sys, time
import transferlm
config = json.loads(sys.argv[1])
began = time.perf_counter()
result = transferlm.train(config, overwrite=True)
print(json.dumps({"wall_s": time.perf_counter() - began, "samples_per_s": result.summary.train_samples_per_s,
                  "steps": result.summary.steps}))
"""


def config(out: Path, steps: int, log_every: int, trackers: list[str]) -> dict:
    return {"model": {"name": "minilm", "max_length": 128},
            "data": {"train": str(DATA / "train.tsv"), "validation": str(DATA / "dev.tsv"), "text_column": "sentence"},
            "train": {"batch_size": 32, "lr": 5e-5, "max_steps": steps, "log_every": log_every, "progress": False,
                      "report_to": trackers},
            "output": str(out)}


def mlflow_server(root: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow = Path(sys.executable).parent / "mlflow"
    server = subprocess.Popen([str(mlflow), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                               "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port",
                               str(port), "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("mlflow server did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--trackers", default="tensorboard,mlflow,wandb")
    parser.add_argument("--json-out", type=Path, default=ROOT / "bench" / "results" / "tracking-cpu.json")
    args = parser.parse_args()
    if not (DATA / "train.tsv").is_file():
        print(f"SST-2 not found at {DATA}: skipping (set TRANSFERLM_DATA to the folder holding sst2/)")
        return 0
    variants = ["none", *[t for t in args.trackers.split(",") if t]]
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as name:
        work = Path(name)
        env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "MLFLOW_EXPERIMENT_NAME": "bench"}
        server = None
        if "mlflow" in variants:
            server, env["MLFLOW_TRACKING_URI"] = mlflow_server(work)
        try:
            for round_ in range(args.repeats):
                order = variants if round_ % 2 == 0 else variants[::-1]
                for variant in order:
                    trackers = [] if variant == "none" else [variant]
                    run_config = config(work / f"{variant}-{round_}", args.steps, args.log_every, trackers)
                    done = subprocess.run([sys.executable, "-c", ONE_RUN, json.dumps(run_config)], env=env,
                                          capture_output=True, text=True, check=True)
                    figures = json.loads(done.stdout.strip().splitlines()[-1])
                    runs[variant].append(figures)
                    print(variant, round_, json.dumps(figures), flush=True)
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)
    base_wall = statistics.median(r["wall_s"] for r in runs["none"])
    base_speed = statistics.median(r["samples_per_s"] for r in runs["none"])
    summary = {}
    for variant, figures in runs.items():
        wall = statistics.median(r["wall_s"] for r in figures)
        speed = statistics.median(r["samples_per_s"] for r in figures)
        summary[variant] = {"median_wall_s": round(wall, 2), "median_samples_per_s": round(speed, 2),
                            "wall_ratio": round(wall / base_wall, 4), "speed_ratio": round(speed / base_speed, 4),
                            "runs": figures}
        print(f"{variant:<12} wall {wall:7.2f} s ({wall / base_wall:.3f}x)   {speed:7.2f} samples/s "
              f"({speed / base_speed:.3f}x)")
    result = {"steps": args.steps, "log_every": args.log_every, "repeats": args.repeats, "variants": summary}
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
