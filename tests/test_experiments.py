"""compare and curve: shared splits, nested subsets, baselines, verdicts, reports, resumption."""

from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import sentiment_rows, tiny_config, write_jsonl
from transferlm.cli.main import main
from transferlm.config import DataConfig, task_settings
from transferlm.config.load import build_config
from transferlm.data.records import Record
from transferlm.errors import ConfigError, RunDirError
from transferlm.experiments.compare import compare
from transferlm.experiments.config import CompareSettings, CurveSettings, load_experiment
from transferlm.experiments.curve import curve, efficiency
from transferlm.experiments.splits import nested_subset
from transferlm.experiments.stats import Summary, labels_needed, paired_standard_error, verdict
from transferlm.experiments.tune import _alive
from transferlm.tasks import build_task


def records(n_per_class: int) -> list[Record]:
    rows = sentiment_rows(2 * n_per_class, seed=7)
    return [Record(r["text"], None, r["label"], i) for i, r in enumerate(rows)]


def test_nested_subsets_are_stratified_and_nested():
    data = records(30)
    key = lambda r: r.label  # noqa: E731
    small, large = nested_subset(data, key, 4, seed=1), nested_subset(data, key, 16, seed=1)
    assert sorted(r.label for r in small) == ["neg"] * 4 + ["pos"] * 4
    assert set(small) <= set(large) and len(large) == 32
    assert nested_subset(data, key, 4, seed=2) != small  # another seed, another subset
    assert len(nested_subset(data, key, 100, seed=1)) == 60  # a class smaller than asked: all of it


def test_summary_and_verdict_words():
    member, baseline = Summary.of([0.90, 0.92, 0.91]), Summary.of([0.80, 0.81, 0.79])
    assert member.mean == pytest.approx(0.91) and member.std == pytest.approx(0.01)
    clear = verdict("lora", member, "tfidf", baseline, 500, True)
    assert clear.outcome == "gain" and clear.words.startswith("lora beats tfidf +11.00")
    close = verdict("frozen", Summary.of([0.81, 0.80, 0.805]), "tfidf", baseline, 500, True)
    assert close.outcome == "tie" and not close.negative  # a tie is no gain, not negative transfer
    assert close.words.startswith("no gain from transfer: frozen ties with tfidf within the noise +0.50")
    below = verdict("frozen", Summary.of([0.795, 0.80, 0.79]), "tfidf", baseline, 500, True)
    assert below.outcome == "tie" and below.difference < 0  # worse, but within the noise: still a tie
    worse = verdict("full", Summary.of([0.7]), "tfidf", Summary.of([0.8]), 400, True)
    assert worse.negative and "negative transfer: full is worse than tfidf beyond the noise -10.00" in worse.words
    # one seed: the noise is the sampling error of the two accuracies on 400 examples
    assert worse.noise == pytest.approx(2 * math.sqrt(0.7 * 0.3 / 400 + 0.8 * 0.2 / 400))


def test_one_seed_verdicts_pair_the_examples():
    # Two models that agree on all but 6 of 400 examples, the member right on all 6: +1.5 points.
    base = [1.0] * 300 + [0.0] * 100
    member = [1.0] * 306 + [0.0] * 94
    paired = paired_standard_error(member, base)
    assert paired == pytest.approx(math.sqrt((6 / 400 - (6 / 400) ** 2) * 400 / 399 / 400))
    one, other = Summary.of([306 / 400]), Summary.of([300 / 400])
    unpaired = verdict("full", one, "tfidf", other, 400, True)
    assert unpaired.outcome == "tie"  # independent sampling errors swamp a 1.5-point gain ...
    assert verdict("full", one, "tfidf", other, 400, True, paired_se=paired).outcome == "gain"  # ... pairing does not


def test_labels_needed_interpolates_in_log_space():
    line = [(10, 0.6), (100, 0.8), (1000, 0.9)]
    assert labels_needed(line, 0.7) == pytest.approx(math.sqrt(10 * 100))
    assert labels_needed(line, 0.5) == 10
    assert labels_needed(line, 0.95) is None
    lines = {
        "full": [(20, Summary.of([0.8]), 10)],
        "tfidf": [(20, Summary.of([0.6]), 10), (200, Summary.of([0.8]), 100)],
    }
    statements = efficiency(lines, {"full": "transfer", "tfidf": "baseline"})
    assert statements == ["with 20 labels, full reaches 80.00; tfidf needs ≈200 labels to match it (10.0x as many)"]


def test_tfidf_baseline_learns_a_lexical_task():
    from transferlm.baselines.tfidf import run_tfidf

    task = build_task(task_settings(), DataConfig(train="x"))
    train, dev = records(40), [Record(r["text"], None, r["label"], i) for i, r in enumerate(sentiment_rows(20, seed=9))]
    assert task.fit_labels(train, {}) == []
    result = run_tfidf(task, train, {"validation": dev}, seed=0)
    assert result.metrics["validation"]["accuracy"] >= 0.9
    assert result.chosen["C"] in (0.25, 1.0, 4.0, 16.0)


def experiment_config(model_dir, tmp_path, **train):
    files = {
        "train": write_jsonl(tmp_path / "train.jsonl", sentiment_rows(40, seed=1)),
        "dev": write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(16, seed=2)),
    }
    return build_config(tiny_config(model_dir, files, tmp_path / "exp", epochs=1, batch_size=8, **train))


@pytest.mark.slow
def test_compare_reports_every_member_and_resumes(tiny_model_dir, tmp_path, caplog):
    config = experiment_config(tiny_model_dir, tmp_path)
    settings = CompareSettings(
        members=["frozen", {"name": "last-n", "set": {"strategy.layers": 1}}, "tfidf", "scratch"], seeds=[0, 1]
    )
    report = compare(config, settings)
    out = config.output
    assert {m["title"] for m in report["members"]} == {"frozen", "last-n", "tfidf", "scratch"}
    for name in ("report.md", "report.html", "report.json", "chart.png"):
        assert (out / name).stat().st_size > 0
    rows = {m["title"]: m for m in report["members"]}
    assert rows["frozen"]["summary"]["seeds"] == 2 and len(rows["frozen"]["values"]) == 2
    assert rows["tfidf"]["summary"]["mean"] >= 0.8  # the fixture is lexical: tf-idf does well
    assert report["best_baseline"] == "tfidf"
    # the tiny random encoder cannot beat tf-idf here, and the report says so in words
    assert "frozen" in report["negative_transfer"]
    markdown = (out / "report.md").read_text()
    assert "NEGATIVE TRANSFER" in markdown and "| frozen | transfer |" in markdown
    assert "<img src='data:image/png;base64," in (out / "report.html").read_text()
    assert rows["last-n"]["trainable"] < rows["scratch"]["trainable"] == rows["scratch"]["total"]
    scores = rows["frozen"]["runs"][0]["example_scores"]["validation"]
    assert len(scores) == 16 and sum(scores) / 16 == pytest.approx(rows["frozen"]["values"][0])
    # every member trained on the same split files
    specs = [json.loads(p.read_text()) for p in out.glob("runs/*/seed-0/job.json")]
    assert len({json.dumps(s["config"]["data"], sort_keys=True) for s in specs}) == 1
    # re-running continues: finished runs are reused, nothing retrains
    caplog.clear()
    with caplog.at_level("INFO"):
        again = compare(config, settings)
    assert sum("finished earlier" in r.message for r in caplog.records) == 8
    assert again["members"][0]["values"] == report["members"][0]["values"]


def test_compare_refuses_a_different_experiment_in_the_same_output(tiny_model_dir, tmp_path):
    config = experiment_config(tiny_model_dir, tmp_path)
    compare(config, CompareSettings(members=["tfidf"], seeds=[0]))
    with pytest.raises(RunDirError, match="different config"):
        compare(config, CompareSettings(members=["tfidf"], seeds=[1]))


def test_compare_reports_all_member_problems_before_training(tiny_model_dir, tmp_path):
    config = experiment_config(tiny_model_dir, tmp_path)
    with pytest.raises(ConfigError) as error:
        compare(config, CompareSettings(members=["fulll"]))
    problem = error.value.problems[0]
    assert "unknown 'fulll'" in problem and "baselines cosine, crf, mean, overlap, ridge, tfidf, scratch" in problem
    bad = CompareSettings(
        members=[{"name": "last-n", "set": {"strategy.layerz": 2}}, {"name": "full", "set": {"strategy.layers": 1}}],
        seeds=[0],
    )
    with pytest.raises(ConfigError) as error:
        compare(config, bad)
    problems = " ".join(error.value.problems)
    assert "member last-n: strategy.layerz" in problems
    assert "strategy.layers: not a setting of strategy full" in problems
    assert not list((config.output / "runs").glob("*/seed-0/result.json"))


def test_a_shared_strategy_section_is_refused_not_ignored(tiny_model_dir, tmp_path):
    config = experiment_config(tiny_model_dir, tmp_path)
    config = config.model_copy(update={"strategy": config.strategy.model_copy(update={"name": "lora"})})
    with pytest.raises(ConfigError, match="the members choose the strategy"):
        compare(config, CompareSettings(members=["tfidf"]))


def test_duplicate_members_need_labels():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="appears twice"):
        CompareSettings(members=["lora", {"name": "lora", "set": {"strategy.r": 4}}])


@pytest.mark.slow
def test_curve_writes_csv_plot_and_statements(tiny_model_dir, tmp_path):
    config = experiment_config(tiny_model_dir, tmp_path)
    contrastive = {"name": "contrastive", "set": {"task.pooling": "mean", "strategy.pairs_per_example": 2}}
    settings = CurveSettings(members=["frozen", contrastive, "tfidf"], seeds=[0, 1], sizes=[4, 10, "all"],
                             min_steps=3, small_seeds=0)
    report = curve(config, settings)
    out = config.output
    with (out / "curve.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 3 * 2 and all(r["value"] and float(r["peak_rss_mb"]) > 0 for r in rows)
    assert {(r["size_per_class"], r["n_train"]) for r in rows} == {("4", "8"), ("10", "20"), ("all", "40")}
    assert (out / "curve.png").stat().st_size > 0
    assert [p["n_train"] for p in report["curves"]["tfidf"]] == [8, 20, 40]
    statements = report["statements"]
    assert len(statements) == 6 and sum("frozen reaches" in s for s in statements) == 3
    assert sum("contrastive reaches" in s for s in statements) == 3
    # small subsets train at least min_steps steps
    job = json.loads((out / "runs" / "frozen" / "n-4" / "seed-0" / "job.json").read_text())
    assert job["config"]["train"]["min_steps"] == 3 and job["config"]["train"]["evaluations"] == 5
    log_file = out / "runs" / "frozen" / "n-4" / "seed-0" / "run" / "log.jsonl"
    log = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [e["step"] for e in log if e["event"] == "end"][0] >= 3


def test_cli_compare_flags_and_yaml_section(tiny_model_dir, tmp_path, capsys):
    files = {
        "train": write_jsonl(tmp_path / "train.jsonl", sentiment_rows(40, seed=1)),
        "dev": write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(16, seed=2)),
    }
    config = tiny_config(tiny_model_dir, files, tmp_path / "exp", epochs=1)
    config["compare"] = {"members": ["tfidf"], "seeds": [3]}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    run, settings = load_experiment(path, "compare", [("compare.seeds", [4, 5])], CompareSettings)
    assert settings.seeds == [4, 5] and [m.name for m in settings.member_list(("tfidf",))] == ["tfidf"]
    assert main(["compare", str(path), "--seeds", "6"]) == 0
    assert "| tfidf | baseline |" in capsys.readouterr().out
    assert (tmp_path / "exp" / "runs" / "tfidf" / "seed-6" / "result.json").is_file()
    assert main(["compare", str(path), "--set", "compare.membrs=[full]"]) == 1
    assert "compare.membrs" in capsys.readouterr().err


def test_example_experiment_config_is_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    run, settings = load_experiment(root / "examples" / "reviews" / "compare.yaml", "compare", [], CompareSettings)
    assert [m.title for m in settings.member_list(("tfidf",))] == ["frozen", "lora", "full", "tfidf", "scratch"]
    assert run.train.epochs == 4


def test_default_members_take_the_task_s_own_baseline():
    settings = CompareSettings()
    assert [m.name for m in settings.member_list(("crf",))] == ["frozen", "lora", "full", "crf", "scratch"]
    assert [m.name for m in settings.member_list(("tfidf",))] == ["frozen", "lora", "full", "tfidf", "scratch"]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_decoders_join_compare_and_curve_like_encoders(request, arch, tmp_path):
    """A decoder classifier (LoRA and full) beside the baselines: the same reports, splits and verdicts."""
    model_dir = request.getfixturevalue(arch)
    config = experiment_config(model_dir, tmp_path)
    report = compare(config, CompareSettings(members=["lora", "full", "tfidf"], seeds=[0]))
    rows = {m["title"]: m for m in report["members"]}
    assert set(rows) == {"lora", "full", "tfidf"} and report["best_baseline"] == "tfidf"
    assert rows["lora"]["trainable"] < rows["full"]["trainable"] == rows["full"]["total"]
    assert all(len(rows[m]["runs"][0]["example_scores"]["validation"]) == 16 for m in ("lora", "full"))
    specs = [json.loads(p.read_text()) for p in config.output.glob("runs/*/seed-0/job.json")]
    assert specs and {s["config"]["model"]["name"] for s in specs} == {str(model_dir)}
    (tmp_path / "curve").mkdir()
    curve_config = experiment_config(model_dir, tmp_path / "curve")
    curved = curve(curve_config, CurveSettings(members=["lora", "tfidf"], seeds=[0], sizes=[4, "all"], min_steps=2))
    assert [p["n_train"] for p in curved["curves"]["lora"]] == [8, 40]
    assert (curve_config.output / "curve.png").stat().st_size > 0


def test_small_sizes_get_at_least_small_seeds(tiny_model_dir, tmp_path):
    from transferlm.experiments.curve import seeds_for

    settings = CurveSettings(small_size=8, small_seeds=5)
    assert seeds_for(4, [0, 1], settings) == [0, 1, 2, 3, 4]
    assert seeds_for(8, [3], settings) == [3, 4, 5, 6, 7]
    assert seeds_for(16, [0, 1], settings) == [0, 1] and seeds_for("all", [0], settings) == [0]
    assert seeds_for(4, [0, 1], CurveSettings(small_seeds=0)) == [0, 1]
    config = experiment_config(tiny_model_dir, tmp_path)
    report = curve(config, CurveSettings(members=["tfidf"], seeds=[0], sizes=[4, "all"], small_seeds=3))
    with (config.output / "curve.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["size_per_class"], r["seed"]) for r in rows) == [("4", "0"), ("4", "1"), ("4", "2"),
                                                                       ("all", "0")]
    assert len(report["curves"]["tfidf"]) == 2


def _children(parent: int) -> list[int]:
    """The live processes whose parent is ``parent`` (from /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if int(ppid) == parent and state != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _wait_for(predicate, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s")


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc to find the job's process")
def test_sigterm_stops_the_job_process_with_the_experiment(tmp_path):
    """Before, SIGTERM ended the experiment's process on the spot and its job's process trained on, orphaned."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\nfrom pathlib import Path\nfrom transferlm.experiments.jobs import run_child\n"
        "run_child([sys.executable, '-c', 'import time; time.sleep(120)'], Path(sys.argv[1]))\n"
    )
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path / "log.txt")])
    child = _wait_for(lambda: _children(parent.pid), 60)[0]
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(60) != 0
    assert not _alive(child)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc to find the job's process")
def test_a_terminated_compare_exits_143_and_leaves_no_job_running(tiny_model_dir, tmp_path):
    files = {
        "train": write_jsonl(tmp_path / "train.jsonl", sentiment_rows(40, seed=1)),
        "dev": write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(16, seed=2)),
    }
    config = tiny_config(tiny_model_dir, files, tmp_path / "exp", epochs=2000)  # minutes: it is stopped first
    config["compare"] = {"members": ["full"], "seeds": [0]}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = subprocess.Popen([sys.executable, "-m", "transferlm", "compare", str(path)], stderr=subprocess.PIPE,
                           text=True)
    job = _wait_for(lambda: _children(cli.pid), 120)[0]
    _wait_for(lambda: (tmp_path / "exp" / "runs" / "full" / "seed-0" / "run").is_dir(), 120)  # training started
    cli.send_signal(signal.SIGTERM)
    _, err = cli.communicate(timeout=90)
    assert cli.returncode == 143 and "interrupted" in err
    assert not _alive(job)
    assert not (tmp_path / "exp" / "runs" / "full" / "seed-0" / "result.json").exists()
