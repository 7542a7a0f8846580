"""The report of `transferlm tune`: report.md, and report.html with the optimisation history, fANOVA parameter
importances and a parallel-coordinate plot (matplotlib PNGs, embedded)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from transferlm.training.checkpoint import atomic_write_text

TUNE_CHARTS = ("history.png", "importances.png", "parallel.png")


def _tune_history(study, complete, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.scatter([t.number for t in complete], [t.value for t in complete], label="completed", color="#1f77b4")
    pruned = [t for t in study.get_trials(deepcopy=False) if t.state.name == "PRUNED" and t.intermediate_values]
    if pruned:
        last = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]
        ax.scatter([t.number for t in pruned], last, marker="x", color="#9e9e9e", label="pruned (last score)")
    ordered = sorted(complete, key=lambda t: t.number)
    pick = max if study.direction.name == "MAXIMIZE" else min
    best = [pick(t.value for t in ordered[: i + 1]) for i in range(len(ordered))]
    ax.step([t.number for t in ordered], best, where="post", color="#d62728", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    ax.legend(fontsize=8)
    ax.set_title("optimisation history", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _tune_importances(importances: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(names) + 1.2))
    ax.barh(names, [importances[n] for n in names], color="#1f77b4")
    ax.set_xlabel("importance (fANOVA, share of the variance of the validation score)")
    ax.set_title("parameter importances", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _tune_parallel(complete, keys: list[str], metric: str, path: Path) -> None:
    """One vertical axis per parameter (scaled to its range: log ranges in log, choices by position), one line per
    completed trial, coloured by its validation score."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def position(key: str, value: Any, values: list[Any]) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and all(
                isinstance(v, (int, float)) for v in values):
            low, high = min(values), max(values)
            if low > 0 and high / low > 20:
                low, high, value = math.log(low), math.log(high), math.log(value)
            return 0.5 if high == low else (value - low) / (high - low)
        choices = sorted({str(v) for v in values})
        return choices.index(str(value)) / max(1, len(choices) - 1)

    columns = {k: [t.params[k] for t in complete if k in t.params] for k in keys}
    scores = [t.value for t in complete]
    low, high = min(scores), max(scores)
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(keys) + 1), 3.6))
    for t in complete:
        ys = [position(k, t.params.get(k), columns[k]) for k in keys]
        ax.plot(range(len(keys)), ys, color=cmap(0.5 if high == low else (t.value - low) / (high - low)), alpha=0.8)
    ax.set_xticks(range(len(keys)), keys, rotation=15, ha="right")
    ax.set_yticks([0, 1], ["low", "high"])
    ax.set_title(f"parallel coordinates (colour: validation {metric}, yellow best)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_tune_report(out: Path, report: dict[str, Any], study, complete) -> None:
    metric = report["metric"]
    keys = list(report["best"]["params"])
    _tune_history(study, complete, metric, out / TUNE_CHARTS[0])
    charts = [out / TUNE_CHARTS[0]]
    if report["importances"]:
        _tune_importances(report["importances"], out / TUNE_CHARTS[1])
        charts.append(out / TUNE_CHARTS[1])
    if keys:
        _tune_parallel(complete, keys, metric, out / TUNE_CHARTS[2])
        charts.append(out / TUNE_CHARTS[2])
    counts = ", ".join(f"{n} {state}" for state, n in report["trials"].items() if n)
    best = report["best"]
    lines = [
        f"# transferlm tune: study {report['study']}",
        "",
        f"Trials: {counts}. Selection: validation {metric} only ({report['direction']}).",
        "",
        f"Best: trial {best['number']}, validation {metric} = {best['validation']:.4f}, with "
        + ", ".join(f"{k} = {v}" for k, v in best["params"].items()) + ". Its complete config: `best.yaml`.",
        "",
    ]
    test = report.get("test")
    if test and test.get("evaluated"):
        lines += [f"Test ({test['evaluated']}, evaluated once, after the search): {metric} = "
                  f"{test[metric]:.4f} on {test['n']} examples.", ""]
    elif test:
        lines += [f"Test: not evaluated; {test['reason']}.", ""]
    else:
        lines += ["No test split was given: the validation score above selected the best trial, so it is optimistic.",
                  ""]
    if report["importances"]:
        lines += ["Parameter importances (fANOVA): " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                                 report["importances"].items()) + ".", ""]
    else:
        lines += ["Parameter importances: not computed (they need completed trials that differ in their parameters "
                  "and in their scores).", ""]
    lines += ["Every trial: `trials.csv`. Charts: " + ", ".join(c.name for c in charts) + "."]
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    images = "".join(f"<p><img src='data:image/png;base64,{base64.b64encode(c.read_bytes()).decode()}' "
                     f"alt='{c.stem}'></p>" for c in charts)
    body = "".join(f"<p>{html.escape(line)}</p>" for line in lines[1:] if line)
    atomic_write_text(out / "report.html", "<!doctype html><html><head><meta charset='utf-8'><title>transferlm "
                      "tune</title><style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}</style></head>"
                      f"<body><h1>{html.escape(lines[0][2:])}</h1>{body}{images}</body></html>\n")
