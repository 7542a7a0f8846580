"""Issue 23: task-aware defaults against `transferlm tune`, model ranking against fine-tuning, and `transferlm auto`
(not a timed test; figures are printed and saved as JSON).

Data sets (each written once into OUTPUT/<name>/, validation selects, test reports):
  sst2    600 SST-2 training rows (seeded sample); validation the default 10 % carve-out; test SST-2 dev (872).
  sst2-b  a second 600 SST-2 training rows, disjoint from sst2's; the same carve-out and test.
  conll   the first 1,000 CoNLL-2003 training sentences; validation the first 1,000 of valid.txt; test test.txt.
  conll-b a second CoNLL-2003 split, disjoint from conll: training sentences 1,000-1,999; valid.txt's 1,000-1,999
          validate, its 2,000th to the last (1,250) test.
  agnews  AG News (only its test split exists here): 8 per class to train, 8 per class to validate, a seeded 500
          per class to test.
  stsb    1,000 STS-B training pairs (seeded sample); validation sts-dev; test sts-test (Spearman).
  squad   SQuAD v1.1 dev by article: the first 3 to train, the next 2 to validate, the 5 after them to test.
  squad-b a second SQuAD split, disjoint from squad: articles 10-14 train, 15-16 validate, 17-23 test.

Parts:
  defaults  per data set: `transferlm train` with no training flags, and `transferlm tune` (--trials, the
            strategy's default space, median pruner) whose best trial is tested once. Where a task rule chose
            the rate or the batch size, also the run with what it replaced (the strategy's rate, batch 32).
            --trials 0 runs no tune and keeps a tune recorded in --json-out.
  rank      per data set of --rank-sets: `transferlm rank` over the candidates (minilm, smollm2, minilm after
            `adapt` on the data set's own text, minilm cut to its first 3 layers, randomly initialised minilm),
            then each candidate fine-tuned with no training flags; Kendall's tau between the estimate and the
            fine-tuned test score, and the ranking's cost against the fine-tuning's.
  seeds     per data set of --rank-sets: each rank candidate fine-tuned again with each of --seeds; how stable
            the fine-tuned order is (tau between every two seeds), the ceiling for any estimate's tau; the
            estimates' tau against each seed, their average, and tau against the mean over the seeds.
  auto      `transferlm auto` on each data set with --time-budget.

Every run keeps its directory: re-running the same command skips what has finished.
Usage: python bench/auto.py [--parts defaults,rank,auto] [--sets sst2,conll,agnews,stsb] [--trials 20]
Reads ../shared/data (or $TRANSFERLM_DATA); a data set whose files are absent is skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from auto_sets import SETS, prepare  # beside this script: python puts bench/ first on the path
from auto_tables import tables

from transferlm.runs.recipes import DEFAULT_BATCH  # train.batch_size auto before the task rules

ROOT = Path(__file__).resolve().parent.parent
STRATEGY_LR = 5e-5  # full fine-tuning's rate before the task rules (train.lr auto = the strategy's)
CANDIDATES = ("minilm", "smollm2", "minilm-adapted", "minilm-3-layers", "random:minilm")


def command(args: list[str], log: Path) -> tuple[int, float]:
    began = time.perf_counter()
    with log.open("w") as f:
        code = subprocess.run([sys.executable, "-m", "transferlm", *args], stdout=f,
                              stderr=subprocess.STDOUT).returncode
    return code, time.perf_counter() - began


def train_run(config: Path, out: Path, extra: list[str], metric: str) -> dict:
    """A `transferlm train` run with only ``extra`` flags; its test score, resolved settings and time."""
    manifest = out / "run.json"
    if not manifest.is_file():
        if out.exists():
            shutil.rmtree(out)
        code, _ = command(["train", str(config), "--output", str(out), *extra], out.with_suffix(".log"))
        if code != 0:
            return {"error": f"exit {code}; see {out.with_suffix('.log')}"}
    metrics = json.loads((out / "metrics.json").read_text())
    saved = yaml.safe_load((out / "transferlm.yaml").read_text())
    run = json.loads(manifest.read_text())
    return {"test": metrics["test"][metric], "validation": metrics["validation"].get(metric),
            "lr": saved["train"]["lr"], "epochs": saved["train"]["epochs"], "batch_size": saved["train"]["batch_size"],
            "wall_seconds": run.get("wall_seconds") or run.get("timing", {}).get("wall_seconds")}


def part_defaults(name: str, config: Path, out: Path, trials: int, timeout: float | None = None) -> dict:
    metric = SETS[name][2]
    result = {"no_flags": train_run(config, out / name / "no-flags", [], metric)}
    if result["no_flags"].get("lr") not in (None, STRATEGY_LR):  # a task rule chose the rate: what it replaced
        result["strategy_lr"] = train_run(config, out / name / "strategy-lr", ["--lr", str(STRATEGY_LR)], metric)
    if result["no_flags"].get("batch_size") not in (None, DEFAULT_BATCH):  # and the batch size
        result["default_batch"] = train_run(config, out / name / "default-batch",
                                            ["--batch-size", str(DEFAULT_BATCH)], metric)
    if trials == 0:
        return result
    study = out / name / "tune"
    report = study / "report.json"
    counts = json.loads(report.read_text()).get("trials", {}) if report.is_file() else {}
    code = 0
    if counts.get("complete", 0) + counts.get("pruned", 0) < trials:
        code, _ = command(["tune", str(config), "--output", str(study), "--trials", str(trials),
                           *(["--timeout", str(timeout)] if timeout else [])], out / name / "tune.log")
    result["tuned"] = tuned(study, metric, f"exit {code}; see {out / name / 'tune.log'}" if code else None)
    return result


def with_gap(figures: dict) -> dict:
    """The defaults part's figures with the tuned run's lead over the no-flag run, in points."""
    no_flags, best = figures.get("no_flags", {}).get("test"), figures.get("tuned", {}).get("test")
    if isinstance(no_flags, float) and isinstance(best, float):
        return {**figures, "gap_points": round(100 * (best - no_flags), 2)}
    return figures


def tuned(study: Path, metric: str, error: str | None = None) -> dict:
    """A finished study's best trial (its validation score, test score and settings); a stopped or failed one's
    trials so far, untested (`tune` tests only at the end)."""
    if error:
        return {"error": error, **tune_so_far(study)}
    report = json.loads((study / "report.json").read_text())
    test = report.get("test", {})
    return {"validation": report["best"]["validation"], "test": (test.get("metrics") or test).get(metric),
            "params": report["best"]["params"], "trials": report["trials"]}


def tune_so_far(study: Path) -> dict:
    """An unfinished study's finished trials and its best validation score; `tune` tests only at the end."""
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{(study / 'study.db').resolve()}")
    try:
        loaded = optuna.load_study(study_name="tune", storage=storage)
        states = [t.state for t in loaded.get_trials(deepcopy=False)]
        result = {"unfinished": True, "trials": {s.name.lower(): states.count(s) for s in optuna.trial.TrialState}}
        if result["trials"]["complete"]:
            result.update(validation=loaded.best_value, params=loaded.best_params)
        return result
    finally:
        storage.engine.dispose()


def _text_file(name: str, config: Path, target: Path) -> Path:
    """The data set's own training text, one paragraph per input, for `adapt`."""
    from transferlm.config.load import build_config
    from transferlm.tasks import build_task

    run = build_config({**yaml.safe_load(config.read_text()), "output": str(target.parent / "unused")})
    records, _ = build_task(run.task, run.data).read_records(run.data.train)
    texts = [" ".join(w.text for w in r.text) if isinstance(r.text, (list, tuple)) else
             " ".join(t for t in (r.text, r.text_pair) if t) for r in records]
    target.write_text("\n\n".join(texts) + "\n", encoding="utf-8")
    return target


def _three_layers(target: Path) -> Path:
    """minilm cut to its first 3 transformer layers (the rest of the files as they are)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from transferlm.models.resolve import resolve_model

    if (target / "config.json").is_file():
        return target
    source = resolve_model("minilm").path
    # The weights and the top-level config.json are written below; every other file is kept, the
    # sentence-transformers pooling config (1_Pooling/config.json) included, as the docstring says.
    def ignore(folder: str, names: list[str]) -> list[str]:
        top = Path(folder) == Path(source)
        return [n for n in names if n.endswith((".safetensors", ".bin")) or (top and n == "config.json")]

    shutil.copytree(source, target, ignore=ignore)
    config = AutoConfig.from_pretrained(source)
    config.num_hidden_layers = 3
    AutoModel.from_pretrained(source, config=config).save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return target


def candidates(name: str, config: Path, out: Path) -> dict[str, list[str]]:
    """Each candidate's --model (and --init) flags."""
    adapted = out / name / "adapted"
    if not (adapted / "run.json").is_file():
        text = _text_file(name, config, out / name / "text.txt")
        if adapted.exists():
            shutil.rmtree(adapted)
        code, _ = command(["adapt", "--train", str(text), "--model", "minilm", "--max-steps", "200", "--no-progress",
                           "--output", str(adapted)], out / name / "adapt.log")
        if code != 0:
            raise SystemExit(f"{name}: adapt failed; see {out / name / 'adapt.log'}")
    layers = _three_layers(out / "minilm-3-layers")
    return {"minilm": ["--model", "minilm"], "smollm2": ["--model", "smollm2"],
            "minilm-adapted": ["--model", str(adapted)], "minilm-3-layers": ["--model", str(layers)],
            "random:minilm": ["--model", "minilm", "--init", "random"]}


def _estimates(name: str, config: Path, out: Path, specs: list[str]) -> dict[str, dict]:
    """Each model's `transferlm rank --probe` row (the probe is measured too; its seconds are recorded apart, as
    the default ranking does without it). The first ranking (OUTPUT/<name>/rank) scores the models then chosen; a
    model added later is ranked on its own (rank-<model>), its scores unaffected by the others'."""
    estimates: dict[str, dict] = {}
    for ranking in [out / name / "rank" / "rank.json", *sorted((out / name).glob("rank-added-*/rank.json"))]:
        if ranking.is_file():
            estimates.update({r["model"]: r for r in json.loads(ranking.read_text())["ranking"]})
    missing = [m for m in specs if m not in estimates]
    if missing:
        first = not (out / name / "rank" / "rank.json").is_file()
        folder = out / name / ("rank" if first else f"rank-added-{'-'.join(Path(m).name for m in missing)}")
        code, _ = command(["rank", str(config), "--output", str(folder), "--models", ",".join(missing), "--probe"],
                          folder.with_suffix(".log"))
        if code != 0:
            raise SystemExit(f"{name}: rank failed; see {folder.with_suffix('.log')}")
        estimates.update({r["model"]: r for r in json.loads((folder / "rank.json").read_text())["ranking"]})
    return estimates


def part_rank(name: str, config: Path, out: Path, chosen: list[str]) -> dict:
    from scipy.stats import kendalltau

    metric = SETS[name][2]
    flags = {c: f for c, f in candidates(name, config, out).items() if c in chosen}
    specs = {c: (f[1] if c != "random:minilm" else "random:minilm") for c, f in flags.items()}
    estimates = _estimates(name, config, out, list(specs.values()))
    rows = {}
    for candidate, extra in flags.items():
        run_dir = out / name / ("no-flags" if candidate == "minilm" else f"fine-tune-{candidate.replace(':', '-')}")
        fine = train_run(config, run_dir, extra, metric)
        estimate = estimates[specs[candidate]]
        layers = estimate.get("logme_layers") or [estimate["logme"]]
        probe_seconds = estimate.get("probe_seconds")  # absent from a ranking made before the probe was optional
        rows[candidate] = {"logme": estimate["logme"], "logme_layer": estimate.get("layer"), "logme_last": layers[-1],
                           "probe": estimate["probe"], "probe_seconds": probe_seconds,
                           "rank_seconds": estimate["seconds"] - (probe_seconds or 0.0), **fine}
    done = {c: r for c, r in rows.items() if isinstance(r.get("test"), float)}
    tests = [done[c]["test"] for c in done]
    result = {"candidates": rows,
              "kendall_tau_logme": kendalltau([done[c]["logme"] for c in done], tests).statistic,
              "kendall_tau_logme_last": kendalltau([done[c]["logme_last"] for c in done], tests).statistic,
              "kendall_tau_probe": kendalltau([done[c]["probe"] for c in done], tests).statistic}
    rank_cost = sum(done[c]["rank_seconds"] for c in done)  # the candidates that were also fine-tuned
    probe_cost = sum(done[c]["probe_seconds"] or 0.0 for c in done)
    tune_cost = sum(r.get("wall_seconds") or 0 for r in done.values())
    result.update(rank_seconds=rank_cost, probe_seconds=probe_cost, fine_tune_seconds=tune_cost,
                  cost_ratio=rank_cost / tune_cost if tune_cost else None,
                  cost_ratio_with_probe=(rank_cost + probe_cost) / tune_cost if tune_cost else None)
    return result


def _flag(key: str, value) -> str:
    """One data setting as the CLI spells it: --header / --no-header, --text-column=[1, 2], --format=tsv."""
    name = key.replace("_", "-")
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no-{name}"
    return f"--{name}={yaml.safe_dump(value, default_flow_style=True).strip() if isinstance(value, list) else value}"


def part_seeds(name: str, config: Path, out: Path, chosen: list[str], seeds: list[int]) -> dict:
    """How stable the fine-tuned order is that the ranking is scored against: each candidate fine-tuned again
    with each of ``seeds`` (its initialisation of the head, data order, dropout and, where the validation split is
    carved out of train, that split). Kendall's tau between every two seeds' test scores, and the estimates' tau
    against each seed (and their average: what one fine-tuning run can be expected to confirm) and against the
    mean over all seeds (a steadier reference order)."""
    from itertools import combinations

    from scipy.stats import kendalltau

    metric = SETS[name][2]
    first = part_rank(name, config, out, chosen)
    flags = {c: f for c, f in candidates(name, config, out).items() if c in first["candidates"]}
    rows = {c: {"test_seed_42": first["candidates"][c].get("test")} for c in flags}
    for candidate, extra in flags.items():
        base = "no-flags" if candidate == "minilm" else f"fine-tune-{candidate.replace(':', '-')}"
        for seed in seeds:
            again = train_run(config, out / name / f"{base}-seed{seed}", [*extra, "--seed", str(seed)], metric)
            rows[candidate].update({f"test_seed_{seed}": again.get("test"),
                                    f"wall_seconds_seed_{seed}": again.get("wall_seconds")})
            if again.get("error"):
                rows[candidate][f"error_seed_{seed}"] = again["error"]
    every = [42, *seeds]
    done = [c for c, r in rows.items() if all(isinstance(r[f"test_seed_{s}"], float) for s in every)]
    scores = {s: [rows[c][f"test_seed_{s}"] for c in done] for s in every}
    mean = [sum(scores[s][i] for s in every) / len(every) for i in range(len(done))]
    result = {"seeds": every, "candidates": rows,
              "kendall_tau_between_seeds": {f"{a}-{b}": kendalltau(scores[a], scores[b]).statistic
                                            for a, b in combinations(every, 2)}}
    for key in ("logme", "probe"):
        estimate = [first["candidates"][c][key] for c in done]
        per_seed = {str(s): kendalltau(estimate, scores[s]).statistic for s in every}  # JSON keys
        result[f"kendall_tau_{key}"] = {"per_seed": per_seed, "average_over_seeds": sum(per_seed.values()) / len(every),
                                        "against_mean": kendalltau(estimate, mean).statistic}
    return result


def part_auto(name: str, config: Path, out: Path, budget: str) -> dict:
    data = yaml.safe_load(config.read_text())["data"]
    target = out / name / "auto"
    flags = [_flag(k, v) for k, v in data.items() if k not in ("train", "validation", "test")]
    files = [f for split in ("train", "validation", "test") if split in data for f in (f"--{split}", data[split])]
    code, seconds = command(["auto", *files, *flags, "--time-budget", budget, "--output", str(target)],
                            out / name / "auto.log")
    if code != 0:
        return {"error": f"exit {code}; see {out / name / 'auto.log'}", "wall_seconds": seconds}
    report = json.loads((target / "auto-report.json").read_text())
    return {"wall_seconds": seconds, "chosen": report.get("plan"), "result": report.get("result")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="defaults,rank")
    parser.add_argument("--sets", default="sst2,conll,agnews,stsb")
    parser.add_argument("--rank-sets", default="sst2,conll,stsb")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--tune-timeout", type=float, default=None,
                        help="The defaults part's tune starts no new trial after this many seconds (tune --timeout).")
    parser.add_argument("--candidates", default=",".join(CANDIDATES),
                        help="The rank part's candidates (a subset of the default list).")
    parser.add_argument("--seeds", default="1", help="The seeds part's other seeds, comma-separated (the first is 42).")
    parser.add_argument("--time-budget", default="30m")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "bench-auto")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--table", action="store_true", help="Print the README tables from --json-out; run nothing.")
    args = parser.parse_args()
    json_out = args.json_out or args.output / "auto.json"
    results = json.loads(json_out.read_text()) if json_out.is_file() else {}
    if args.table:
        print(tables(results, {name: spec[2] for name, spec in SETS.items()}, STRATEGY_LR, DEFAULT_BATCH))
        return 0
    parts = args.parts.split(",")
    chosen = args.candidates.split(",")
    if unknown := set(chosen) - set(CANDIDATES):
        parser.error(f"--candidates: unknown {sorted(unknown)}; choose from {', '.join(CANDIDATES)}")
    for name in args.sets.split(","):
        config = prepare(name, args.output)
        if config is None:
            continue
        for part in parts:
            if part == "defaults":
                figures = part_defaults(name, config, args.output, args.trials, args.tune_timeout)
                recorded = results.get(part, {}).get(name, {})
                if args.trials == 0 and "tuned" in recorded:  # no tune this time: keep the recorded one
                    figures = {"tuned": recorded["tuned"], **figures}
                figures = with_gap(figures)
            elif part == "rank":
                figures = part_rank(name, config, args.output, chosen) if name in args.rank_sets.split(",") else None
            elif part == "seeds":
                figures = (part_seeds(name, config, args.output, chosen, [int(x) for x in args.seeds.split(",")])
                           if name in args.rank_sets.split(",") else None)
            else:
                figures = part_auto(name, config, args.output, args.time_budget)
            if figures is not None:
                results.setdefault(part, {})[name] = figures
                print(json.dumps({part: {name: figures}}, indent=2, default=str), flush=True)
                json_out.parent.mkdir(parents=True, exist_ok=True)
                json_out.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
