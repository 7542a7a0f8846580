"""Faults (issue 25): kill -9 at random points of export, adapt, tune, compare and curve, then the same command
again; and a full disk. Not a timed test: outcomes are printed and saved as JSON.

Each command runs on a tiny random BERT (tests/conftest.py's fixtures) and small generated data, so a run takes
seconds. First one run without a fault gives its duration; then, per trial, the command is started, killed with
SIGKILL (its whole process group) at a uniformly random time within that duration, and checked:
  - half-written never looks complete: when the command's completion file exists, the artifact must load and be
    whole (the same check as after a clean run);
  - the same command again finishes the job. Where a command refuses to continue an interrupted run without
    ``--resume`` and says so, it is rerun with ``--resume`` and the outcome says that it was needed.
Full disk: a 1 MiB tmpfs as the output (needs root and ``mount``; skipped with a message otherwise). An export
that cannot fit must fail with a message that names the disk, and leave the export written there earlier intact.

Usage: python bench/faults.py [--commands export,adapt,tune,compare,curve] [--trials 4] [--seed 0] [--json-out F]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_tiny_bert, sentiment_rows, tiny_config, write_jsonl  # noqa: E402


def transferlm(*args: str) -> list[str]:
    return [sys.executable, "-m", "transferlm", *args]


def setup(work: Path) -> dict:
    import transferlm as tl

    model = make_tiny_bert(work / "tiny-bert")
    files = {"train": write_jsonl(work / "train.jsonl", sentiment_rows(60, seed=1)),
             "dev": write_jsonl(work / "dev.jsonl", sentiment_rows(20, seed=2))}
    config = tiny_config(model, files, work / "unused", epochs=3)
    config_path = work / "experiment.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run = tl.train({**config, "output": str(work / "run")}).run_dir
    text = work / "text.txt"
    text.write_text("\n\n".join(r["text"] for r in sentiment_rows(200, seed=3)), encoding="utf-8")
    return {"model": str(model), "config": str(config_path), "run": str(run), "text": str(text),
            "dev": str(files["dev"])}


def commands(made: dict, out: Path) -> dict[str, tuple[list[str], Path]]:
    """Each command and the file whose presence says it finished."""
    return {
        "export": (transferlm("export", made["run"], "--output", str(out), "--quantize", "int8", "--check",
                              made["dev"]), out / "run.json"),
        "adapt": (transferlm("adapt", "--train", made["text"], "--model", made["model"], "--max-steps", "60",
                             "--no-progress", "--output", str(out)), out / "run.json"),
        "tune": (transferlm("tune", made["config"], "--trials", "4", "--output", str(out)), out / "report.json"),
        "compare": (transferlm("compare", made["config"], "--members", "frozen,full,tfidf", "--seeds", "0,1",
                               "--output", str(out)), out / "report.json"),
        "curve": (transferlm("curve", made["config"], "--members", "frozen,tfidf", "--sizes", "4,all", "--seeds", "0",
                             "--output", str(out)), out / "report.json"),
    }


def whole(name: str, out: Path) -> str | None:
    """Why the finished artifact is not whole, or None."""
    import transferlm as tl

    try:
        if name == "export":
            predictions = tl.load(out).predict(["a great film"])
            return None if predictions and "label" in predictions[0] else "export predicts nothing"
        if name == "adapt":
            from transformers import AutoModel

            AutoModel.from_pretrained(out)
            return None
        if name == "tune":
            rows = (out / "trials.csv").read_text().strip().split("\n")[1:]
            best = yaml.safe_load((out / "best.yaml").read_text())
            return None if len(rows) >= 4 and best.get("train") else f"{len(rows)} trials listed, best {best}"
        report = json.loads((out / "report.json").read_text())
        return None if report.get("members") or report.get("curves") else "report without results"
    except Exception as e:  # the point is to report any way it is broken
        return f"{type(e).__name__}: {e}"


def run(argv: list[str], timeout: float = 900) -> tuple[int, str, float]:
    began = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stderr[-1500:], time.perf_counter() - began


def kill_at(argv: list[str], after: float) -> bool:
    """Start ``argv``, SIGKILL its process group after ``after`` seconds; whether it was still running."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        process.wait(timeout=after)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True


def trial(name: str, made: dict, out: Path, duration: float, rng: random.Random) -> dict:
    argv, done_file = commands(made, out)[name]
    after = round(rng.uniform(0.2, duration), 2)
    killed = kill_at(argv, after)
    looked_complete = done_file.exists()
    broken = whole(name, out) if looked_complete else None
    code, err, seconds = run(argv)
    resumed = False
    if code != 0 and "--resume" in err:
        resumed = True
        code, err, seconds = run([*argv, "--resume"])
    problem = whole(name, out) if code == 0 else None
    return {"killed_at_s": after, "killed": killed, "looked_complete_after_kill": looked_complete,
            "half_written_looked_complete": broken, "rerun_exit": code, "needed_resume": resumed,
            "rerun_s": round(seconds, 1), "whole_after_rerun": code == 0 and problem is None,
            "problem": problem or (err.strip().splitlines()[-1] if code != 0 and err.strip() else None)}


def full_disk(made: dict, work: Path) -> dict:
    mount = work / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return {"skipped": "needs root and mount(8) for a tmpfs"}
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        return {"skipped": f"mount -t tmpfs failed: {mounted.stderr.strip()}"}
    try:
        earlier = mount / "earlier"
        code, err, _ = run(transferlm("export", made["run"], "--output", str(earlier)))
        if code != 0:
            return {"skipped": f"the first export does not fit in 1 MiB either: {err.strip()[-300:]}"}
        before = sorted((p.name, p.stat().st_size) for p in earlier.iterdir())
        ballast = mount / "ballast"  # leave less room than the next export needs
        free = shutil.disk_usage(mount).free
        ballast.write_bytes(b"\0" * max(0, free - 64 * 1024))
        code, err, _ = run(transferlm("export", made["run"], "--output", str(mount / "later")))
        message = err.strip().splitlines()[-1] if err.strip() else ""
        after = sorted((p.name, p.stat().st_size) for p in earlier.iterdir())
        return {"exit": code, "message": message, "traceback": "Traceback" in err,
                "names_the_disk": "space" in err.lower() or "disk" in err.lower(),
                "earlier_export_unchanged": before == after, "earlier_export_whole": whole("export", earlier) is None,
                "later_left_behind": sorted(p.name for p in mount.iterdir())}
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", default="export,adapt,tune,compare,curve")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    results: dict = {"trials": args.trials, "seed": args.seed}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        made = setup(work)
        for name in filter(None, args.commands.split(",")):  # --commands "": only the full disk
            reference = work / f"{name}-reference"
            code, err, duration = run(commands(made, reference)[name][0])
            if code != 0 or whole(name, reference):
                results[name] = {"error": f"the run without a fault failed: {err.strip()[-500:]}"}
                print(json.dumps({name: results[name]}), flush=True)
                continue
            trials = [trial(name, made, work / f"{name}-{i}", duration, rng) for i in range(args.trials)]
            results[name] = {"clean_run_s": round(duration, 1), "trials": trials,
                             "finished_after_rerun": sum(t["whole_after_rerun"] for t in trials),
                             "half_written_looked_complete": sum(bool(t["half_written_looked_complete"])
                                                                 for t in trials)}
            print(json.dumps({name: results[name]}), flush=True)
        results["full_disk"] = full_disk(made, work)
        print(json.dumps({"full_disk": results["full_disk"]}), flush=True)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
