"""`transferlm tune`: the search space and its errors, trials in child processes, resuming a study, pruning,
the outputs, and several workers sharing one study (SQLite, and a real PostgreSQL server)."""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import transferlm
from conftest import tiny_config
from transferlm.config.load import build_config
from transferlm.errors import ConfigError
from transferlm.experiments.config import TuneSettings
from transferlm.experiments.tune import tune

optuna = pytest.importorskip("optuna", reason="optuna is not installed (pip install -e '.[tune]')")

SPACE = {"train.lr": {"type": "float", "low": 1e-3, "high": 5e-2, "log": True},
         "train.batch_size": {"type": "categorical", "choices": [8, 16]}}


def tune_config(model_dir, files, output):
    config = tiny_config(model_dir, files, output, epochs=6)
    config["data"]["test"] = str(files["test"])
    return build_config(config)


def trials(url: str, study: str, states: tuple | None = None) -> list:
    """The study's trials (those in ``states``, if given); the database connections are closed again (an open one
    warns at exit)."""
    storage = optuna.storages.RDBStorage(url)
    try:
        return optuna.load_study(study_name=study, storage=storage).get_trials(states=states)
    finally:
        storage.engine.dispose()


def finished(url: str, study: str) -> list:
    return trials(url, study, (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))


def test_space_keys_and_ranges_are_checked_before_any_trial(tiny_model_dir, sentiment_files, tmp_path):
    config = tune_config(tiny_model_dir, sentiment_files, tmp_path / "tune")
    wrong = TuneSettings(space={"train.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3}})
    with pytest.raises(ConfigError, match="tune.space.train.learning_rate.*unknown key"):
        tune(config, wrong)
    with pytest.raises(ValueError, match="empty range: low 0.001 is not below high 1e-05"):
        TuneSettings(space={"train.lr": {"type": "float", "low": 1e-3, "high": 1e-5}})
    with pytest.raises(ValueError, match="non-empty list of choices"):
        TuneSettings(space={"train.batch_size": {"type": "categorical", "choices": []}})
    bad_value = TuneSettings(space={"train.batch_size": {"type": "int", "low": 0, "high": 4}})
    with pytest.raises(ConfigError, match="tune.space.train.batch_size = 0"):
        tune(config, bad_value)
    with pytest.raises(ConfigError, match="tune.storage 'postgresql://nobody@127.0.0.1:9/none' cannot be opened"):
        tune(config, TuneSettings(space=SPACE, storage="postgresql://nobody@127.0.0.1:9/none"))
    assert not (tmp_path / "tune" / "trials").exists()


# A planted best value: at lr 1e-9 nothing is learned, at 1e-2 the tiny model learns the keyword labels.
PLANTED = {"train.lr": {"type": "categorical", "choices": [1e-9, 1e-2]},
           "train.batch_size": {"type": "categorical", "choices": [8, 16]}}


def test_tune_finds_the_planted_best_and_writes_config_trials_reports(tiny_model_dir, sentiment_files, tmp_path):
    config = tune_config(tiny_model_dir, sentiment_files, tmp_path / "tune")
    report = tune(config, TuneSettings(trials=3, space=PLANTED, pruner="none"))
    out = tmp_path / "tune"
    with (out / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["state"] for r in rows] == ["complete"] * 3
    assert all(float(r["peak_rss_mb"]) > 0 and float(r["wall_seconds"]) > 0 for r in rows)
    # trials never see the test split; the best trial's run is tested once, afterwards
    for saved in glob.glob(str(out / "trials" / "*" / "run" / "transferlm.yaml")):
        assert yaml.safe_load(Path(saved).read_text())["data"]["test"] is None
    assert report["test"]["evaluated"] == "best trial's run" and report["test"]["n"] == 12
    best = report["best"]
    assert best["validation"] == max(float(r["value"]) for r in rows)
    assert {float(r["train.lr"]) for r in rows} == {1e-9, 1e-2}  # both were tried
    assert best["params"]["train.lr"] == 1e-2
    assert best["validation"] > max(float(r["value"]) for r in rows if float(r["train.lr"]) == 1e-9)
    best_yaml = yaml.safe_load((out / "best.yaml").read_text())
    assert best_yaml["train"]["lr"] == best["params"]["train.lr"]
    assert best_yaml["data"]["test"] == str(sentiment_files["test"])
    assert "evaluated once, after the search" in (out / "report.md").read_text()
    assert (out / "history.png").stat().st_size > 0 and (out / "parallel.png").stat().st_size > 0
    assert "data:image/png;base64" in (out / "report.html").read_text()

    # re-running with a larger target continues the same study: one new trial, not four
    tune(config, TuneSettings(trials=4, space=PLANTED, pruner="none"))
    assert len(finished(f"sqlite:///{(out / 'study.db').resolve()}", "tune")) == 4
    assert len(list((out / "trials").iterdir())) == 4

    # best.yaml is a complete config that `train` runs as it is, evaluating as the trials did (5 times), so it
    # keeps the checkpoint the best trial kept and reproduces its validation score
    assert best_yaml["train"]["evaluations"] == 5
    best_yaml["output"] = str(tmp_path / "from-best")
    result = transferlm.train(best_yaml)
    assert result.test["n"] == 12
    assert result.summary.validation[report["metric"]] == best["validation"]


def test_a_study_without_validation_or_test_files_selects_on_the_carve_out(tiny_model_dir, sentiment_files,
                                                                            tmp_path):
    # the plainest config a user writes: a training file alone, validation carved from it by the seed
    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "tune", epochs=2)
    del config["data"]["validation"]
    report = tune(build_config(config), TuneSettings(trials=2, space=PLANTED, pruner="none"))
    assert report["trials"]["complete"] == 2 and "test" not in report
    assert 0 <= report["best"]["validation"] <= 1


def test_example_scores_of_a_carved_validation_split_match_its_metric(tiny_model_dir, sentiment_files, tmp_path):
    from transferlm.experiments.child import _example_scores

    data = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", epochs=1)
    del data["data"]["validation"]
    config = build_config(data)
    result = transferlm.train(config)
    scores = _example_scores(result.run_dir, config)["validation"]
    assert len(scores) == result.summary.validation["n"]
    assert sum(scores) / len(scores) == pytest.approx(result.summary.validation["accuracy"])


def test_a_pruned_trial_stops_early_and_still_leaves_its_best_run(tiny_model_dir, sentiment_files, tmp_path):
    from transferlm.experiments.child import _pruner

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    for _ in range(2):  # two earlier trials scored 1.0 at their first of 5 evaluations: the median pruner stops
        earlier = study.ask()  # anything below
        earlier.report(1.0, 1)
        study.tell(earlier, 1.0)
    trial = study.ask()
    hook = _pruner({"storage": storage, "study": "s", "trial_id": trial._trial_id, "pruner": "median"}, 5)
    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", epochs=3, evaluations=5)
    result = transferlm.train(config, on_evaluate=hook)
    assert result.summary.pruned and result.summary.steps == 3  # 15 steps planned; stopped at the first evaluation
    # reported as evaluation 1 of 5 (step 3 of 15), where trials of any batch size compare
    assert optuna.load_study(study_name="s", storage=storage).trials[2].intermediate_values.keys() == {1}
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["training"]["pruned"] is True
    assert transferlm.load(result.run_dir).predict(["a great film"])


def test_trials_of_different_batch_sizes_report_at_the_same_budget_points(tiny_model_dir, sentiment_files,
                                                                           tmp_path):
    from transferlm.experiments.child import budget_point
    from transferlm.training.fit import evaluation_steps

    points = {}
    for batch_size in (4, 8, 16):
        seen: list[tuple[int, int]] = []

        def hook(step: int, total_steps: int, value: float) -> bool:
            seen.append((step, budget_point(step, total_steps, 4)))  # noqa: B023  (called within this iteration)
            return False

        config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / f"b{batch_size}", epochs=3,
                             batch_size=batch_size, evaluations=4)
        transferlm.train(config, on_evaluate=hook)
        points[batch_size] = seen
    # 30, 15 and 9 optimizer steps: different step numbers, the same four points of the budget
    assert [s for s, _ in points[4]] == [8, 15, 22, 30] and [s for s, _ in points[16]] == [2, 4, 7, 9]
    assert [p for _, p in points[4]] == [p for _, p in points[8]] == [p for _, p in points[16]] == [1, 2, 3, 4]
    assert evaluation_steps(450, 5) == {90, 180, 270, 360, 450} and evaluation_steps(114, 5) == {23, 46, 68, 91, 114}
    assert evaluation_steps(3, 5) == {1, 2, 3}  # fewer steps than evaluations: every step


def _workers(tiny_model_dir, sentiment_files, tmp_path, storage: str) -> list[Path]:
    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "unused", epochs=1)
    config["tune"] = {"space": SPACE, "pruner": "none"}
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(config))
    outputs = [tmp_path / f"worker-{i}" for i in range(2)]
    commands = [[sys.executable, "-m", "transferlm", "tune", str(path), "--trials", "4", "--storage", storage,
                 "--study", "shared", "--output", str(out)] for out in outputs]
    workers = []
    for command in commands:
        workers.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        time.sleep(1.0)
    for worker in workers:
        output, _ = worker.communicate(timeout=600)
        assert worker.returncode == 0, output
    return outputs


def _check_shared_study(outputs: list[Path], storage: str) -> None:
    trials = finished(storage, "shared")
    assert len(trials) == 4 and sorted(t.number for t in trials) == [0, 1, 2, 3]
    ran = [len(list((out / "trials").iterdir())) for out in outputs]
    assert sum(ran) == 4 and min(ran) >= 1, ran  # both workers took trials from the one study
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2
    # and drew their own configurations: a second worker once repeated the first one's draws
    assert len({t.params["train.lr"] for t in trials}) == 4


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tiny_model_dir, sentiment_files, tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    outputs = _workers(tiny_model_dir, sentiment_files, tmp_path, storage)
    _check_shared_study(outputs, storage)


def _postgres_binaries() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


@pytest.fixture()
def postgres_url(tmp_path):
    """A real PostgreSQL server on a free local port, for the duration of one test."""
    binaries = _postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL binaries (pg_ctl, initdb) not found; apt-get install postgresql (.ci/run does)")
    pytest.importorskip("psycopg", reason="psycopg (PostgreSQL driver) is not installed (requirements/dev.txt)")
    data = Path(f"/tmp/transferlm-pg-{os.getpid()}")
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the postgres user the package creates
        shutil.chown(data, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(data / "db"), "-U", "tune", "--auth=trust"],
                   check=True, capture_output=True)
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data / "db"), "-o", options, "-l",
                    str(data / "log"), "-w", "start"], check=True, capture_output=True)
    try:
        subprocess.run([*as_user, str(binaries.parent / "bin" / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                        "-U", "tune", "study"], check=True, capture_output=True)
        yield f"postgresql://tune@127.0.0.1:{port}/study"
    finally:
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data / "db"), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_one_postgresql_study(tiny_model_dir, sentiment_files, tmp_path, postgres_url):
    outputs = _workers(tiny_model_dir, sentiment_files, tmp_path, postgres_url)
    _check_shared_study(outputs, postgres_url)


def test_a_worker_that_loses_the_race_to_create_the_tables_opens_the_study_again(tmp_path, monkeypatch):
    """Two workers on a new database: the second one's schema insert fails with an IntegrityError (seen in CI on
    sqlite); opening again finds the tables the first one made."""
    optuna = pytest.importorskip("optuna")
    from transferlm.experiments import tune as tune_module

    class IntegrityError(Exception):  # what sqlalchemy raises, matched by name as open_study does
        pass

    real, calls = optuna.create_study, []

    def racing(**kwargs):
        calls.append(kwargs["storage"])
        if len(calls) == 1:
            raise IntegrityError("UNIQUE constraint failed: alembic_version.version_num")
        return real(**kwargs)

    monkeypatch.setattr(optuna, "create_study", racing)
    monkeypatch.setattr(tune_module.time, "sleep", lambda seconds: None)
    study, storage, _ = tune_module.open_study(TuneSettings(), tmp_path, "maximize")
    assert len(calls) == 2 and study.direction.name == "MAXIMIZE"
    monkeypatch.setattr(optuna, "create_study", lambda **kwargs: (_ for _ in ()).throw(IntegrityError("again")))
    with pytest.raises(ConfigError, match="cannot be opened: IntegrityError"):
        tune_module.open_study(TuneSettings(), tmp_path / "other", "maximize")


def test_a_resumed_study_and_a_second_worker_draw_new_configurations(tmp_path):
    """One seeded sampler per process would restart its random stream: a resumed study drew its first
    configurations again, and two workers on one study drew the same ones."""
    from transferlm.experiments.config import ParameterRange
    from transferlm.experiments.tune import ask

    space = {key: ParameterRange.model_validate(value) for key, value in SPACE.items()}
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")

    def session(n: int, name: str) -> list[float]:  # one `tune` process: a new sampler seeded with 0
        study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True, direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=0))
        drawn = []
        for _ in range(n):
            trial, params = ask(study, space, 0)
            study.tell(trial, params["train.lr"])
            drawn.append(params["train.lr"])
        return drawn

    try:
        lrs = session(2, "s") + session(2, "s")
        assert len(set(lrs)) == 4, lrs  # the resumed session did not repeat the first one's draws
        # the same study run again from nothing draws the same sequence
        assert session(4, "again") == lrs
        # two workers on one study, asking in turn, draw different trials
        a = optuna.create_study(storage=storage, study_name="w", direction="maximize")
        b = optuna.load_study(storage=storage, study_name="w")
        (ta, pa), (tb, pb) = ask(a, space, 0), ask(b, space, 0)
        assert (ta.number, tb.number) == (0, 1) and pa["train.lr"] != pb["train.lr"]
    finally:
        storage.engine.dispose()


def test_an_interrupted_trial_is_marked_failed_at_once(tiny_model_dir, sentiment_files, tmp_path, monkeypatch):
    """Left running, a stopped worker's trial counts toward every other worker's target until that machine resumes."""
    from transferlm.experiments import tune as tune_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tune_module, "run_job", interrupted)
    config = tune_config(tiny_model_dir, sentiment_files, tmp_path / "tune")
    with pytest.raises(KeyboardInterrupt):
        tune(config, TuneSettings(trials=2, space=SPACE, pruner="none"))
    url = f"sqlite:///{(tmp_path / 'tune' / 'study.db').resolve()}"
    assert [t.state for t in trials(url, "tune")] == [optuna.trial.TrialState.FAIL]
