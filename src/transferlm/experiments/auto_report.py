"""``transferlm auto``'s report: the plan (every choice with its evidence), the result beside the baseline, and the
line that reproduces the run; as Markdown and as a standalone HTML page built from the same sections."""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any

from transferlm.baselines import PRETRAINED
from transferlm.experiments.report import html_table, markdown_table
from transferlm.training.checkpoint import atomic_write_text

log = logging.getLogger(__name__)

Section = tuple[str, list[str], list[list[str]] | None]  # title, paragraphs, table (header row first)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_value(v)}" for k, v in value.items())
    return str(value)


def sections(report: dict[str, Any]) -> list[Section]:
    plan = report["plan"]
    profile = plan["profile"]
    found: list[Section] = [("Data", [f"Task: **{plan['task']}**, because {plan['inferred']}."],
                             [["what", "value"], *[[k, _value(v)] for k, v in profile.items()]])]
    if plan.get("ranking"):
        rows = [["model", "LogME", "seconds", "features"]]  # auto orders by LogME and fits no probe
        rows += [[r["model"], "failed" if r["error"] else f"{r['logme']:.4f}", f"{r['seconds']:.1f}",
                  r["features"] or r["error"]]
                 for r in plan["ranking"]]
        found.append(("Model ranking (frozen features, no training)", [], rows))
    choices = [["setting", "chosen", "why"]]
    choices += [[c["key"], _value(c["value"]), ("kept as given" if c["given"] else c["why"])]
                for c in plan["choices"]]
    estimate = plan.get("estimate") or {}
    budget = (f"Estimated {estimate.get('seconds', 0) / 60:.1f} minutes ({estimate.get('steps')} steps at "
              f"{estimate.get('seconds_per_step')} s, timed on this machine) of a "
              f"{estimate.get('budget_seconds', 0) / 60:.0f}-minute budget." if estimate else "")
    found.append(("Choices", [budget] if budget else [], choices))
    result = report.get("result")
    if result:
        rows = [["member", f"{result['metric']} ({result['split']})", "kind", "verdict"]]
        rows += [[title, "failed" if m["value"] is None else f"{m['value']:.4f}", m["kind"], m["verdict"] or ""]
                 for title, m in result["members"].items()]
        notes = [f"Trained run: `{result['run_dir']}`."]
        if result["negative_transfer"]:
            best = result.get("best_baseline") or "the baseline"
            unchanged = " (the pretrained model as it is, with no training: fine-tuning made it worse)" if \
                best in PRETRAINED else ""
            notes.append(f"**Negative transfer:** {', '.join(result['negative_transfer'])} scored below {best}"
                         f"{unchanged} by more than the noise.")
        found.append(("Result", notes, rows))
        found.append(("Reproduce", ["The trained run, with every setting explicit:", f"`{result['reproduce']}`"],
                      None))
    elif report.get("dry_run"):
        found.append(("Dry run", ["Nothing was trained. Run the same command without --dry-run to carry out the "
                                  "plan."], None))
    return found


def report_markdown(report: dict[str, Any]) -> str:
    parts = ["# transferlm auto", ""]
    for title, paragraphs, table in sections(report):
        parts += [f"## {title}", ""]
        parts += [p + "\n" for p in paragraphs]
        if table:
            parts += [markdown_table(table), ""]
    return "\n".join(parts).rstrip() + "\n"


def report_html(report: dict[str, Any]) -> str:
    body = []
    for title, paragraphs, table in sections(report):
        body.append(f"<h2>{html.escape(title)}</h2>")
        body += [f"<p>{html.escape(p.replace('**', '').replace('`', ''))}</p>" for p in paragraphs]
        if table:
            body.append(html_table(table))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>transferlm auto</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style></head><body>"
            f"<h1>transferlm auto</h1>{''.join(body)}</body></html>\n")


def write_report(out: Path, report: dict[str, Any], stem: str) -> None:
    """``stem``.json, .md and .html (auto-plan or auto-report), each written atomically."""
    atomic_write_text(out / f"{stem}.json", json.dumps(report, indent=2, default=str))
    atomic_write_text(out / f"{stem}.md", report_markdown(report))
    atomic_write_text(out / f"{stem}.html", report_html(report))
    log.info("auto: %s written to %s", stem, out)
