"""Issue 23, a lever for the model ranking: does a short fine-tune order the candidates better than LogME?

Each candidate of the rank part of bench/auto.py (its data sets and candidate models in OUTPUT, which that script
writes) is trained for --steps optimizer steps with the recipe `train.lr`/`train.batch_size: auto` give it (the
run's own rate and batch, a schedule of --steps steps), and at each step of --checks its held-out loss (the
training objective, per unit, on the first 512 validation items) and the task's validation metric are taken.
Kendall's tau between minus that loss and the candidate's fine-tuned test score (bench/results/auto-cpu.json) is
printed per check. Every candidate runs in its own process (own seed, own memory). Not a timed test: the seconds
are printed so the cost can be set against the fine-tuning's.

Usage: python bench/short_tune.py [--sets sst2,conll,stsb] [--steps 20] [--checks 5,10,20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = {"minilm": "minilm", "minilm-adapted": "{out}/{name}/adapted", "minilm-3-layers": "{out}/minilm-3-layers",
              "random:minilm": "random:minilm"}
VALIDATION_ITEMS = 512


def validation_loss(model, task, features, pad_id: int) -> float:
    """The training objective on the first VALIDATION_ITEMS validation items, per loss unit."""
    import torch

    model.eval()
    total = units = 0.0
    items = features.items[:VALIDATION_ITEMS]
    with torch.no_grad():
        for start in range(0, len(items), 64):
            chunk = items[start:start + 64]
            batch = task.training_collate(chunk, pad_id)
            total += float(task.loss(task.forward(model, batch), batch).total)
            units += task.loss_units(chunk)
    model.train()
    return total / units


def one(data_yaml: Path, spec: str, steps: int, checks: set[int]) -> dict:
    """One candidate trained for ``steps`` steps by the same loop and recipe as `transferlm train`."""
    import yaml
    from accelerate.utils import set_seed

    from transferlm.config.load import build_config
    from transferlm.models.load import load_tokenizer, quiet_loading
    from transferlm.models.resolve import model_kind, resolve_model
    from transferlm.runs.lengths import resolve_max_length
    from transferlm.runs.prepare import load_splits
    from transferlm.runs.recipes import auto_recipe
    from transferlm.runs.task_settings import resolve_task_settings
    from transferlm.runs.train import _accelerator, _with_train
    from transferlm.strategies import build_strategy
    from transferlm.strategies.base import LoopContext, TrainingInputs
    from transferlm.tasks import build_task
    from transferlm.training.loop import TrainingLoop

    raw = yaml.safe_load(data_yaml.read_text())
    pretrained = not spec.startswith("random:")
    raw.update(output=str(data_yaml.parent / "unused"), model={"name": spec.removeprefix("random:"),
                                                              "init": "pretrained" if pretrained else "random"})
    config = build_config(raw)
    began = time.perf_counter()
    resolved = resolve_model(config.model.name)
    config, _ = resolve_task_settings(config, resolved.path)
    task, strategy = build_task(config.task, config.data), build_strategy(config.strategy)
    accelerator = _accelerator(config)
    splits = load_splits(config, task)
    set_seed(config.train.seed)
    tokenizer = load_tokenizer(resolved.path)
    recipe = auto_recipe(task.name, strategy, model_kind(resolved.path), len(splits.train))
    config = resolve_max_length(_with_train(config, lr=recipe.lr, batch_size=recipe.batch_size, max_steps=steps), task,
                                tokenizer, resolved.path, splits.train)
    train, validation = (task.encode(tokenizer, records, config.model.max_length)
                         for records in (splits.train, splits.validation))
    with quiet_loading():
        model = strategy.apply(task.build_model(resolved.path, tokenizer, pretrained=pretrained), task)
    context = LoopContext(accelerator.device, accelerator.autocast, tokenizer.pad_token_id,
                          max(64, config.train.batch_size), config.train.seed)
    inputs = strategy.training_inputs(TrainingInputs(model, task, train, validation), context)
    loop = TrainingLoop(inputs.module, inputs.task, strategy, inputs.train, config.train, accelerator,
                        tokenizer.pad_token_id, recipe.budget)
    metric = config.train.metric or task.default_metric
    result = {"spec": spec, "lr": recipe.lr, "setup_s": round(time.perf_counter() - began, 1)}
    for step in loop.steps():
        if step.step in checks:
            metrics = loop.evaluate(inputs.validation)
            loss = validation_loss(loop.unwrapped, inputs.task, inputs.validation, tokenizer.pad_token_id)
            result[f"s{step.step}"] = {"loss": round(loss, 4), metric: round(float(metrics[metric]), 4),
                                       "t": round(time.perf_counter() - began, 1)}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="sst2,conll,stsb")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--checks", default="5,10,20")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "bench-auto")
    parser.add_argument("--fine-tuned", type=Path, default=ROOT / "bench" / "results" / "auto-cpu.json")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--one", nargs=2, metavar=("DATA_YAML", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    checks = {int(c) for c in args.checks.split(",")}
    if args.one:
        print(json.dumps(one(Path(args.one[0]), args.one[1], args.steps, checks)), flush=True)
        return 0
    from scipy.stats import kendalltau

    fine_tuned = json.loads(args.fine_tuned.read_text())["rank"]
    results = {}
    for name in args.sets.split(","):
        data_yaml = args.output / name / "data.yaml"
        if not data_yaml.is_file():
            print(f"{name}: {data_yaml} not found; run bench/auto.py --parts rank --sets {name} first")
            continue
        rows = {}
        for candidate, pattern in CANDIDATES.items():
            spec = pattern.format(out=args.output, name=name)
            done = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--checks", args.checks,
                                   "--one", str(data_yaml), spec], capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{name} {candidate} failed:\n{done.stderr[-3000:]}")
            rows[candidate] = {**json.loads(done.stdout.strip().splitlines()[-1]),
                               "fine_tuned_test": fine_tuned[name]["candidates"][candidate]["test"]}
            print(name, candidate, json.dumps(rows[candidate]), flush=True)
        tests = [r["fine_tuned_test"] for r in rows.values()]
        results[name] = {"candidates": rows, "kendall_tau_minus_loss": {
            f"s{c}": kendalltau([-r[f"s{c}"]["loss"] for r in rows.values()], tests).statistic for c in sorted(checks)}}
        print(name, "tau", results[name]["kendall_tau_minus_loss"], flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
