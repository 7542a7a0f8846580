"""Peak memory and step time of training at long inputs (issue 25): IMDb at 512 x 32, SQuAD at 256 x 32.

Not a timed test: figures are printed and saved as JSON. Each case runs ``transferlm train`` for a few optimizer
steps in its own process (peak RSS is the process's own) with the bundled MiniLM, batch 32, and a setting varied:
``train.max_batch_tokens`` (the token budget per forward/backward pass; auto is 4,096 on a CPU, none is the whole
batch at once) and the attention implementation (eager keeps each layer's 32 x 12 x L x L attention weights for
the backward pass; sdpa is PyTorch's fused kernel).

Usage: python bench/memory.py [--cases imdb-512,squad-256] [--steps 4] [--json-out FILE]
Reads ../shared/data (or $TRANSFERLM_DATA); a case whose data is absent is skipped with a message.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TRANSFERLM_DATA", ROOT.parent / "shared" / "data"))
CASES = {"imdb-512": (DATA / "imdb" / "train.csv", 512), "squad-256": (DATA / "squad" / "dev-v1.1.json", 256)}
VARIANTS = {"auto-tokens": {"max_batch_tokens": "auto"}, "whole-batch": {"max_batch_tokens": None}}


def peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _files(case: str, tmp: Path) -> tuple[Path, Path, dict]:
    """Training data, and a validation file small enough that evaluation (run at the last step) adds nothing to the
    peak: the figure is training's."""
    source, _ = CASES[case]
    if case == "squad-256":
        document = json.loads(source.read_text(encoding="utf-8"))
        files = []
        for name, articles in (("train", document["data"][:6]), ("validation", document["data"][6:7])):
            if name == "validation":
                articles = [{**articles[0], "paragraphs": articles[0]["paragraphs"][:2]}]
            files.append(tmp / f"{name}.json")
            files[-1].write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
        return files[0], files[1], {"type": "qa"}
    with source.open(encoding="utf-8", newline="") as f:
        rows = random.Random(0).sample(list(csv.DictReader(f)), 2008)
    files = []
    for name, part in (("train", rows[:2000]), ("validation", rows[2000:])):
        files.append(tmp / f"{name}.csv")
        with files[-1].open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, ["text", "label"])
            writer.writeheader()
            writer.writerows(part)
    return files[0], files[1], {"type": "classification", "long_inputs": "truncate"}


def child(case: str, variant: str, attention: str, steps: int) -> dict:
    import transferlm

    if attention != "default":  # every model transformers builds from here on
        from transformers import PreTrainedModel

        original = PreTrainedModel.from_pretrained.__func__

        def with_attention(cls, *args, **kwargs):
            return original(cls, *args, **{**kwargs, "attn_implementation": attention})

        PreTrainedModel.from_pretrained = classmethod(with_attention)
    with tempfile.TemporaryDirectory() as tmp:
        train, validation, task = _files(case, Path(tmp))
        config = {"model": {"name": "minilm", "max_length": CASES[case][1]}, "task": task,
                  "data": {"train": str(train), "validation": str(validation)},
                  "train": {"batch_size": 32, "lr": 5e-5, "max_steps": steps, "eval_every": 10**9, "progress": False,
                            **VARIANTS[variant]},
                  "output": str(Path(tmp) / "run")}
        s = transferlm.train(config).summary
    return {"seconds_per_step": round(s.train_seconds / s.steps, 2), "samples_per_s": round(s.train_samples_per_s, 2),
            "steps": s.steps, "peak_rss_mb": peak_rss_mb()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="imdb-512,squad-256")
    parser.add_argument("--variants", default="auto-tokens,whole-batch")
    parser.add_argument("--attention", default="default", help="Comma-separated: default, eager, sdpa.")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child.split(":"), args.steps)))
        return 0
    results: dict = {"machine": {"cpus": os.cpu_count()}, "steps": args.steps}
    for case in args.cases.split(","):
        if not CASES[case][0].is_file():
            print(f"SKIP {case}: {CASES[case][0]} not found (see shared/data/README.md)")
            continue
        for variant in args.variants.split(","):
            for attention in args.attention.split(","):
                done = subprocess.run([sys.executable, __file__, "--child", f"{case}:{variant}:{attention}",
                                       "--steps", str(args.steps)], capture_output=True, text=True)
                figures = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {
                    "error": f"exit {done.returncode}: {done.stderr[-600:]}"}
                results[f"{case}/{variant}/{attention}"] = figures
                print(json.dumps({f"{case}/{variant}/{attention}": figures}), flush=True)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
