"""Experiment reports: Markdown, HTML (chart embedded) and JSON for compare; CSV, plot and Markdown for curve."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from transferlm.experiments.stats import NOISE_SE
from transferlm.training.checkpoint import atomic_write_text

CHART = "chart.png"


def _params(row: dict[str, Any]) -> str:
    if row["kind"] == "baseline" and row["name"] != "scratch":
        return f"{row['trainable']:,} (linear)"
    return f"{row['trainable']:,} ({100 * row['trainable'] / row['total']:.3g}%)"


def compare_table(rows: list[dict[str, Any]], best: str | None) -> list[list[str]]:
    header = [
        "member",
        "kind",
        "metric (mean ± std)",
        f"vs {best or 'baseline'}",
        "trainable params",
        "train time (s)",
        "peak memory (MB)",
        "samples/s",
        "seeds",
    ]
    table = [header]
    for row in rows:
        if "summary" not in row:
            table.append([row["title"], row["kind"], "failed", "", "", "", "", "", "0"])
            continue
        memory = f"{row['peak_rss_mb']:.0f} RSS" + (f", {row['peak_gpu_mb']:.0f} GPU" if row["peak_gpu_mb"] else "")
        diff = row.get("difference")
        table.append(
            [
                row["title"],
                row["kind"],
                row["summary"].text(),
                "" if diff is None else f"{100 * diff:+.2f}",
                _params(row),
                f"{row['train_seconds']:.1f}",
                memory,
                f"{row['samples_per_s']:.1f}",
                str(row["summary"].n),
            ]
        )
    return table


def markdown_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(cells) + " |" for cells in table[1:]]
    return "\n".join(lines)


def html_table(table: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in table[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bar_chart(rows: list[dict[str, Any]], metric: str, split: str, path: Path, n_eval: int, proportion: bool) -> None:
    """Means with the noise the verdicts use: 2 standard errors (over seeds; with one seed, the sampling error
    on the n_eval examples)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if "summary" in r]
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(shown) + 1), 3.6))
    means = [100 * r["summary"].mean for r in shown]
    errors = [100 * NOISE_SE * r["summary"].standard_error(n_eval, proportion) for r in shown]
    colors = ["#9e9e9e" if r["kind"] == "baseline" else "#1f77b4" for r in shown]
    ax.bar(range(len(shown)), means, yerr=errors, color=colors, capsize=4)
    ax.set_xticks(range(len(shown)), [r["title"] for r in shown], rotation=20, ha="right")
    low = min(m - e for m, e in zip(means, errors, strict=True)) if means else 0
    ax.set_ylim(max(0, low - 5), min(100, max(m + e for m, e in zip(means, errors, strict=True)) + 2))
    ax.set_ylabel(f"{metric} on {split} (%)")
    ax.set_title(f"transfer (blue), baselines (grey); bars: ±{NOISE_SE:g} standard errors", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("summary", "verdict")}
    if "summary" in row:
        s = row["summary"]
        out["summary"] = {"mean": s.mean, "std": s.std, "seeds": s.n}
    if "verdict" in row:
        v = row["verdict"]
        out["verdict"] = {
            "difference": v.difference,
            "noise": v.noise,
            "outcome": v.outcome,
            "negative_transfer": v.negative,
            "words": v.words,
        }
    return out


def _compare_intro(prepared, config) -> str:
    split, n_eval, seeds = prepared.files.evaluated, prepared.files.n_eval, prepared.seeds
    caveat = (
        ""
        if split == "test"
        else " The validation split also picked each run's best checkpoint, so these figures are optimistic; give "
        "data.test for an unbiased comparison."
    )
    noise = (
        f" Noise is 2 standard errors of the difference over {len(seeds)} seeds."
        if len(seeds) > 1
        else " With one seed, seed noise is not measured: the noise shown is 2 standard errors of the difference "
        f"on these {n_eval} examples (paired example by example where the metric allows); run several seeds to "
        "include seed variation."
    )
    return (
        f"{prepared.metric} on the {split} split ({n_eval} examples), {len(prepared.splits.train)} training "
        f"examples, seeds {', '.join(map(str, seeds))}, model {config.model.name}.{caveat}{noise}"
    )


def _verdicts(rows: list[dict[str, Any]], best: str | None) -> tuple[list[str], dict[str, list[str]]]:
    """The verdict lines, headed by who lost to the best baseline and who only tied with it."""
    if best is None:
        return [
            "no baseline finished, so transfer cannot be judged; add the task's baseline (tfidf, crf) or scratch "
            "to the members"
        ], {"negative": [], "tie": []}
    judged = [r for r in rows if "verdict" in r]
    verdicts = [r["verdict"].words for r in judged]
    outcomes = {kind: [r["title"] for r in judged if r["verdict"].outcome == kind] for kind in ("negative", "tie")}
    if outcomes["tie"]:
        verdicts.insert(0, f"NO GAIN FROM TRANSFER: {', '.join(outcomes['tie'])} did not beat the best baseline "
                           f"({best}) beyond the noise, nor lose to it.")
    if outcomes["negative"]:
        verdicts.insert(0, f"NEGATIVE TRANSFER: {', '.join(outcomes['negative'])} did worse than the best baseline "
                           f"({best}) beyond the noise.")
    return verdicts, outcomes


def _html_page(intro: str, table: list[list[str]], chart: Path, verdicts: list[str]) -> str:
    image = base64.b64encode(chart.read_bytes()).decode()
    items = "".join(f"<li>{html.escape(v)}</li>" for v in verdicts)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>transferlm compare</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}"
        f"</style></head><body><h1>transferlm compare</h1><p>{html.escape(intro)}</p>{html_table(table)}"
        f"<p><img src='data:image/png;base64,{image}' alt='chart'></p><h2>Verdict</h2><ul>{items}</ul>"
        "</body></html>\n"
    )


def write_compare_report(out: Path, rows: list[dict[str, Any]], best: str | None, prepared, config) -> dict[str, Any]:
    bar_chart(rows, prepared.metric, prepared.files.evaluated, out / CHART, prepared.files.n_eval,
              "loss" not in prepared.metric)
    table = compare_table(rows, best)
    intro = _compare_intro(prepared, config)
    verdicts, outcomes = _verdicts(rows, best)
    sections = [
        "# transferlm compare",
        intro,
        markdown_table(table),
        f"![chart]({CHART})",
        "## Verdict",
        "\n".join(f"- {v}" for v in verdicts),
    ]
    atomic_write_text(out / "report.md", "\n\n".join(sections) + "\n")
    atomic_write_text(out / "report.html", _html_page(intro, table, out / CHART, verdicts))
    report = {
        "metric": prepared.metric,
        "split": prepared.files.evaluated,
        "n_eval": prepared.files.n_eval,
        "n_train": len(prepared.splits.train),
        "seeds": prepared.seeds,
        "best_baseline": best,
        "negative_transfer": outcomes["negative"],
        "no_gain": outcomes["tie"],
        "verdicts": verdicts,
        "members": [_json_row(r) for r in rows],
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str))
    return report


def curve_plot(lines: dict[str, list], kinds: dict[str, str], metric: str, split: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for member, line in lines.items():
        xs = [n for n, _, _ in line]
        ys = [100 * s.mean for _, s, _ in line]
        sd = [100 * (s.std or 0) for _, s, _ in line]
        style = "--" if kinds.get(member) == "baseline" else "-"
        (drawn,) = ax.plot(xs, ys, style, marker="o", label=member)
        ax.fill_between(
            xs,
            [y - d for y, d in zip(ys, sd, strict=True)],
            [y + d for y, d in zip(ys, sd, strict=True)],
            color=drawn.get_color(),
            alpha=0.15,
        )
    ax.set_xscale("log")
    ax.set_xlabel("labelled training examples (log scale)")
    ax.set_ylabel(f"{metric} on {split} (%)")
    ax.set_title("data efficiency: mean over seeds, band = ±1 std; dashed = baseline")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv
    import io

    buffer = io.StringIO()
    fields = ["member", "kind", "size_per_class", "n_train", "seed", "value", "train_seconds", "wall_seconds",
              "peak_rss_mb", "error"]
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def write_curve_report(out: Path, rows, lines, statements, kinds, prepared, config) -> dict[str, Any]:
    metric, split = prepared.metric, prepared.files.evaluated
    _write_csv(out / "curve.csv", rows)
    curve_plot(lines, kinds, metric, split, out / "curve.png")
    sizes = sorted(
        {size for line in lines.values() for _, _, size in line}, key=lambda v: float("inf") if v == "all" else v
    )
    table = [["member", *[f"{s} per class" if s != "all" else "all" for s in sizes]]]
    for member, line in lines.items():
        by_size = {size: (n, s) for n, s, size in line}
        cells = [f"{by_size[s][1].text()} (n={by_size[s][0]:,})" if s in by_size else "" for s in sizes]
        table.append([member, *cells])
    intro = (
        f"{metric} on the {split} split ({prepared.files.n_eval} examples); nested stratified subsets of "
        f"{len(prepared.splits.train):,} training examples; seeds {', '.join(map(str, prepared.seeds))}; "
        f"model {config.model.name}."
    )
    markdown = "\n\n".join(
        [
            "# transferlm curve",
            intro,
            markdown_table(table),
            "![curve](curve.png)",
            "## Sample efficiency",
            "\n".join(f"- {s}" for s in statements) or "- (no baseline)",
        ]
    )
    atomic_write_text(out / "report.md", markdown + "\n")
    report = {
        "metric": metric,
        "split": split,
        "n_eval": prepared.files.n_eval,
        "seeds": prepared.seeds,
        "curves": {
            m: [
                {"n_train": n, "size_per_class": size, "mean": s.mean, "std": s.std, "seeds": s.n}
                for n, s, size in line
            ]
            for m, line in lines.items()
        },
        "statements": statements,
        "points": rows,
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str))
    return report

