"""Experiment trackers (train.report_to) against the real backends: TensorBoard's own event reader, a real MLflow
server on loopback with a SQLite store, and W&B in offline mode read back from the files it writes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import transferlm
from conftest import sentiment_rows, tiny_config, write_jsonl
from transferlm.config.load import build_config
from transferlm.errors import MissingExtraError, RegistryError
from transferlm.tracking import TRACKERS, Tracker, Tracking, event_metrics, flat_params, register_tracker


def test_events_become_metrics_named_by_what_they_measure():
    assert event_metrics("train", {"step": 5, "epoch": 0, "loss": 0.5, "lr": 1e-3, "samples_per_s": 80.0}) == {
        "train/epoch": 0.0, "train/loss": 0.5, "train/lr": 1e-3, "system/samples_per_s": 80.0}
    assert event_metrics("eval", {"step": 5, "epoch": 1, "accuracy": 0.9, "improved": True, "peak_rss_mb": 900.0}) == {
        "validation/accuracy": 0.9, "system/peak_rss_mb": 900.0}
    assert event_metrics("resume", {"step": 5}) == {}
    assert flat_params({"train": {"lr": 0.01, "report_to": ["mlflow"]}, "output": "out", "x": {}}) == {
        "train.lr": "0.01", "train.report_to": '["mlflow"]', "output": "out", "x": "{}"}


def test_unknown_tracker_and_missing_extra_fail_before_training(tiny_model_dir, sentiment_files, tmp_path):
    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", report_to=["mlfow"])
    with pytest.raises(RegistryError, match="unknown tracker 'mlfow'.*Did you mean 'mlflow'"):
        transferlm.train(config)

    @register_tracker("absent-backend")
    class Absent(Tracker):
        extra, module = "absent", "transferlm_no_such_tracking_library"

        def start(self): ...
        def log_metrics(self, metrics, step): ...
        def log_artifacts(self, paths): ...
        def finish(self, status): ...

    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", report_to=["absent-backend"])
    with pytest.raises(MissingExtraError, match=r"pip install 'transferlm\[absent\]'"):
        transferlm.train(config)
    assert not (tmp_path / "run").exists()  # nothing was started


class _Recorder(Tracker):
    """Keeps what it is given; breaks on its third metrics call when ``fail_at`` says so."""

    extra, module = "none", "json"
    seen: list = []
    fail_at: int | None = None

    def start(self):
        type(self).seen.append(("start", self.info.name, self.info.kind, self.info.parent, self.info.resume))
        return f"ref-{self.info.name}"

    def log_metrics(self, metrics, step):
        calls = sum(1 for s in type(self).seen if s[0] == "metrics")
        if type(self).fail_at is not None and calls == type(self).fail_at:
            raise ConnectionError("tracking server went away")
        type(self).seen.append(("metrics", dict(metrics), step))

    def log_artifacts(self, paths):
        type(self).seen.append(("artifacts", sorted(p.name for p in paths)))

    def finish(self, status):
        type(self).seen.append(("finish", status))


TRACKERS.register("recorder", _Recorder)


@pytest.fixture()
def recorder():
    _Recorder.seen, _Recorder.fail_at = [], None
    yield _Recorder
    _Recorder.seen, _Recorder.fail_at = [], None


def test_a_run_reports_config_events_results_and_artifacts(tiny_model_dir, sentiment_files, tmp_path, recorder):
    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", report_to=["recorder"], log_every=1)
    config["data"]["test"] = str(sentiment_files["test"])
    result = transferlm.train(config)
    kinds = [s[0] for s in recorder.seen]
    assert kinds[0] == "start" and kinds[-1] == "finish" and recorder.seen[-1] == ("finish", "finished")
    steps = [s for s in recorder.seen if s[0] == "metrics"]
    train_steps = [s[2] for s in steps if "train/loss" in s[1]]
    assert train_steps == list(range(1, result.summary.steps + 1))  # log_every 1: every step
    assert sum("validation/accuracy" in s[1] for s in steps) >= 2  # each epoch's evaluation and the final one
    final = steps[-1]
    assert final[2] == result.summary.steps
    assert final[1]["test/accuracy"] == pytest.approx(result.test["accuracy"])
    assert final[1]["system/peak_rss_mb"] > 0 and final[1]["parameters/trainable"] > 0
    artifacts = next(s[1] for s in recorder.seen if s[0] == "artifacts")
    assert {"metrics.json", "transferlm.yaml", "run.json"} <= set(artifacts)
    assert json.loads((result.run_dir / "tracking.json").read_text()) == {"recorder": "ref-run"}


def test_a_tracker_that_breaks_mid_run_is_dropped_and_the_run_finishes(tiny_model_dir, sentiment_files, tmp_path,
                                                                      recorder, caplog):
    recorder.fail_at = 2
    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", report_to=["recorder"], log_every=1)
    with caplog.at_level("WARNING"):
        result = transferlm.train(config)
    assert (result.run_dir / "run.json").is_file()
    assert sum(s[0] == "metrics" for s in recorder.seen) == 2
    assert any("tracker recorder failed to log metrics (ConnectionError: tracking server went away)" in r.message
               for r in caplog.records)


def test_a_failed_run_is_closed_as_failed(tiny_model_dir, sentiment_files, tmp_path, recorder, monkeypatch):
    from transferlm.training.fit import Fitter

    def broken(self, resume=False):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(Fitter, "run", broken)
    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", report_to=["recorder"])
    with pytest.raises(RuntimeError, match="out of memory"):
        transferlm.train(config)
    assert recorder.seen[-1] == ("finish", "failed")


def test_a_resumed_run_continues_its_tracker_run(tiny_model_dir, sentiment_files, tmp_path, recorder):
    from conftest import interrupted_after

    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", report_to=["recorder"],
                         checkpoint_every=2)
    with interrupted_after(3), pytest.raises(KeyboardInterrupt):
        transferlm.train(config)
    assert recorder.seen[-1] == ("finish", "killed")
    recorder.seen = []
    transferlm.train(config, resume=True)
    assert recorder.seen[0][4] == "ref-run"  # resumed with the reference saved by the interrupted run


# --- TensorBoard -------------------------------------------------------------------------------------------------


def test_tensorboard_events_read_back_with_tensorboards_reader(tiny_model_dir, sentiment_files, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", report_to=["tensorboard"], log_every=1)
    result = transferlm.train(config)
    events = EventAccumulator(str(result.run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "validation/accuracy", "system/samples_per_s", "system/peak_rss_mb"} <= set(
        scalars)
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, result.summary.steps + 1))
    final = events.Scalars("validation/accuracy")[-1]
    assert final.step == result.summary.steps
    assert final.value == pytest.approx(result.summary.validation["accuracy"])
    texts = events.Tags()["tensors"]
    assert "config/text_summary" in texts and "reports/metrics.json/text_summary" in texts
    config_text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| train.lr | 0.01 |" in config_text


# --- MLflow: a real server ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def mlflow_server(tmp_path):
    if shutil.which("mlflow", path=os.path.dirname(sys.executable)) is None:
        pytest.skip("mlflow is not installed (pip install 'transferlm[mlflow]'; .ci/run installs it)")
    port = _free_port()
    root = tmp_path / "mlflow-server"
    root.mkdir()
    command = [os.path.join(os.path.dirname(sys.executable), "mlflow"), "server",
               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination",
               str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = (root / "server.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.mark.slow
def test_mlflow_server_records_a_run_and_nests_a_compares_members(tiny_model_dir, tmp_path, mlflow_server,
                                                                  monkeypatch):
    from mlflow import MlflowClient

    from transferlm.experiments.compare import compare
    from transferlm.experiments.config import CompareSettings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "transferlm-test")
    files = {"train": write_jsonl(tmp_path / "train.jsonl", sentiment_rows(40, seed=1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(16, seed=2))}
    config = build_config(tiny_config(tiny_model_dir, files, tmp_path / "exp", epochs=1, report_to=["mlflow"]))
    compare(config, CompareSettings(members=["frozen", "bitfit", "tfidf"], seeds=[0]))

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("transferlm-test")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("transferlm.kind") == "compare"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["runs/bitfit/seed-0/run", "runs/frozen/seed-0/run"]
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"report.md", "report.json"}
    assert [m["name"] for m in json.loads(parent.data.params["compare.members"])] == ["frozen", "bitfit", "tfidf"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.params["train.lr"] == "0.01"
        assert child.data.params["strategy.name"] in ("frozen", "bitfit")
        history = client.get_metric_history(child.info.run_id, "validation/accuracy")
        run_dir = Path(child.data.tags["transferlm.run_dir"])
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert history[-1].value == pytest.approx(metrics["validation"]["accuracy"])
        assert history[-1].step == metrics["training"]["steps"]
        assert child.data.metrics["system/peak_rss_mb"] > 0
        assert {"metrics.json", "transferlm.yaml"} <= {a.path for a in client.list_artifacts(child.info.run_id)}


# --- Weights & Biases, offline -----------------------------------------------------------------------------------


def _wandb_records(path: Path):
    """The records of a W&B transaction log (``run-ID.wandb``): a LevelDB-style log of 32 KiB blocks after a 7-byte
    header, each record a 7-byte header (checksum, length, type: 1 full, 2 first, 3 middle, 4 last) and a protobuf."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, block, pos, pending = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos: pos + 7])
        chunk, pos = data[pos + 7: pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending + chunk if kind == 4 else chunk)
            pending = b""
            yield record
        elif kind in (2, 3):
            pending = chunk if kind == 2 else pending + chunk


@pytest.mark.slow
def test_wandb_offline_run_records_config_history_and_files(tiny_model_dir, sentiment_files, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", report_to=["wandb"])
    result = transferlm.train(config)
    (run,) = (result.run_dir / "wandb").glob("offline-run-*")
    run_id = json.loads((result.run_dir / "tracking.json").read_text())["wandb"]
    records = list(_wandb_records(run / f"run-{run_id}.wandb"))

    def key(item):
        return item.key or "/".join(item.nested_key)

    (started,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert started.run_id == run_id and started.display_name == "run" and started.job_type == "train"
    params = {key(i): json.loads(i.value_json) for i in started.config.update}
    assert params["train.lr"] == "0.01" and params["model.max_length"] == "32"
    history = [{key(i): json.loads(i.value_json) for i in r.history.item} for r in records
               if r.WhichOneof("record_type") == "history"]
    final = history[-1]
    assert final["_step"] == result.summary.steps
    assert final["validation/accuracy"] == pytest.approx(result.summary.validation["accuracy"])
    assert final["system/peak_rss_mb"] > 0 and any("train/loss" in h for h in history)
    saved = {f.path for r in records if r.WhichOneof("record_type") == "files" for f in r.files.files}
    assert {"metrics.json", "transferlm.yaml", "run.json"} <= saved
    assert (run / "files" / "metrics.json").read_text() == (result.run_dir / "metrics.json").read_text()
    assert any(r.WhichOneof("record_type") == "exit" and r.exit.exit_code == 0 for r in records)


class _BrokenStart(_Recorder):
    def start(self):
        raise ConnectionError("no server at the tracking URI")


TRACKERS.register("broken-start", _BrokenStart)


def test_tracking_open_closes_what_it_opened_when_a_later_tracker_fails(recorder):
    from transferlm.tracking import RunInfo

    with pytest.raises(RegistryError):  # names are checked before anything starts
        Tracking.open(["recorder", "no-such-tracker"], RunInfo("r", Path("."), "train"))
    assert recorder.seen == []
    with pytest.raises(ConnectionError, match="no server"):
        Tracking.open(["recorder", "broken-start"], RunInfo("r", Path("."), "train"))
    assert recorder.seen[-1] == ("finish", "failed")


def test_a_run_interrupted_before_trackers_existed_still_resumes(tiny_model_dir, sentiment_files, tmp_path):
    import yaml

    from conftest import interrupted_after

    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", checkpoint_every=2)
    with interrupted_after(3), pytest.raises(KeyboardInterrupt):
        transferlm.train(config)
    saved_path = tmp_path / "run" / "transferlm.yaml"
    saved = yaml.safe_load(saved_path.read_text())
    del saved["train"]["report_to"], saved["data"]["sources"]  # as an older transferlm wrote it
    saved_path.write_text(yaml.safe_dump(saved))
    assert transferlm.train(config, resume=True).summary.steps == 10
