"""The tables of bench/README.md's issue-23 section, from bench/auto.py's saved figures."""

from __future__ import annotations


def _points(value) -> str:
    return f"{100 * value:.2f}" if isinstance(value, float) else "failed"


def _probe_seconds(value, digits: int) -> str:
    """The probe's seconds; a ranking made before the probe was optional counted them in its rank seconds."""
    return "in rank s" if value is None else f"{value:.{digits}f}"


def tables(results: dict, metrics: dict[str, str], strategy_lr: float, default_batch: int) -> str:
    """The bench/README.md tables, from the saved figures (``bench/auto.py --table``); ``metrics``: each data set's
    metric; ``strategy_lr``, ``default_batch``: full fine-tuning's rate and the batch before the task rules."""
    lines = []
    if results.get("defaults"):
        lines += ["| data set | metric | no training flags (lr, batch, epochs) | strategy's lr only (before the task "
                  "rules) | batch 32 only (before the task rules) | tuned (trials complete / pruned) | tuned "
                  "settings | gap |", "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |"]
        for name, r in results["defaults"].items():
            plain, tuned = r["no_flags"], r.get("tuned", {})
            trials = tuned.get("trials", {})
            settings = ", ".join(f"{k.split('.')[-1]} {v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]} {v}"
                                 for k, v in (tuned.get("params") or {}).items())
            before = (_points(r["strategy_lr"].get("test")) if "strategy_lr" in r else
                      "same" if plain.get("lr") == strategy_lr else "not run")
            batch = (_points(r["default_batch"].get("test")) if "default_batch" in r else
                     "same" if plain.get("batch_size") == default_batch else "not run")
            result = ("not run" if not tuned else
                      f"not finished, best validation {_points(tuned.get('validation'))}" if tuned.get("unfinished")
                      else f"{_points(tuned.get('test'))} ({trials.get('complete')} / {trials.get('pruned')})")
            lines.append(f"| {name} | {metrics[name]} | {_points(plain.get('test'))} ({plain.get('lr')}, "
                         f"{plain.get('batch_size')}, {plain.get('epochs')}) | {before} | {batch} | {result} | "
                         f"{settings} | {r.get('gap_points', '')} |")
    if results.get("rank"):
        lines += ["", "| data set | candidate | LogME, best layer (which) | LogME, last layer | probe | rank s | "
                  "probe s | fine-tuned test | fine-tune s |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, r in results["rank"].items():
            for candidate, c in r["candidates"].items():
                test = "not finished" if c.get("note") else _points(c.get("test"))
                last = c.get("logme_last", c["logme"])
                lines.append(f"| {name} | {candidate} | {c['logme']:.4f} ({c.get('logme_layer')}) | {last:.4f} | "
                             f"{c['probe']:.4f} | {c['rank_seconds']:.1f} | "
                             f"{_probe_seconds(c.get('probe_seconds'), 1)} | {test} | {c.get('wall_seconds') or ''} |")
            last_tau = r.get("kendall_tau_logme_last", r["kendall_tau_logme"])
            with_probe = r.get("cost_ratio_with_probe")
            cost = f"ranking: {100 * (r['cost_ratio'] or 0):.1f} %" + (
                f", {100 * with_probe:.1f} % with the probe" if with_probe and r.get("probe_seconds") else "")
            lines.append(f"| {name} | **Kendall tau** | **{r['kendall_tau_logme']:.2f}** | {last_tau:.2f} | "
                         f"{r['kendall_tau_probe']:.2f} | {r['rank_seconds']:.0f} | "
                         f"{_probe_seconds(r.get('probe_seconds'), 0)} | | {r['fine_tune_seconds']:.0f} ({cost}) |")
    if results.get("seeds"):
        lines += ["", *seeds_table(results["seeds"], results.get("rank", {}))]
    return "\n".join(lines)


def seeds_table(seeds: dict, rank: dict) -> list[str]:
    """Each candidate's test score per seed, tau between every two seeds, LogME's (best layer) tau against each
    seed, their average and the mean over seeds (``bench/auto.py --parts seeds``), and what LogME's first choice
    costs: the best candidate's mean test score minus that of the one LogME puts first."""
    names = list(next(iter(seeds.values()))["candidates"])
    lines = ["| data set | seeds | " + " | ".join(names) + " | tau between seeds | LogME against each seed | "
             "its average | against the mean | LogME's first choice: regret |",
             "| --- | --- | " + " | ".join("---:" for _ in names) + " | ---: | ---: | ---: | ---: | --- |"]
    for name, r in seeds.items():
        every = r["seeds"]
        cells = [" / ".join(_points(c.get(f"test_seed_{s}")) for s in every) for c in r["candidates"].values()]
        between = ", ".join(f"{v:.2f}" for v in r["kendall_tau_between_seeds"].values())
        logme = r["kendall_tau_logme"]
        each = " / ".join(f"{logme['per_seed'][str(s)]:.2f}" for s in every)
        means = {c: sum(r["candidates"][c][f"test_seed_{s}"] for s in every) / len(every) for c in r["candidates"]
                 if all(isinstance(r["candidates"][c].get(f"test_seed_{s}"), float) for s in every)}
        estimates = {c: v["logme"] for c, v in rank.get(name, {}).get("candidates", {}).items() if c in means}
        first = max(estimates, key=estimates.get) if estimates else None
        regret = f"{first}: {100 * (max(means.values()) - means[first]):.2f}" if first else ""
        lines.append(f"| {name} | {' / '.join(map(str, every))} | {' | '.join(cells)} | {between} | {each} | "
                     f"{logme['average_over_seeds']:.2f} | {logme['against_mean']:.2f} | {regret} |")
    return lines
