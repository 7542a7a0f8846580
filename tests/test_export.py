"""ONNX export: parity with torch, the export directory loads like a run directory, nothing half-written."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

import transferlm
from conftest import ner_rows, qa_rows, sentiment_rows, tiny_config, write_jsonl
from test_strategies import NOT_PREDICTORS, TASK_CASES, data_files
from transferlm.errors import ExportError
from transferlm.exporting.onnx import ExportSettings, export
from transferlm.inference.onnx_runtime import MODEL_FILE, OnnxForward

pytest.importorskip("onnxruntime")


def trained(tiny_model_dir, tmp_path, task: str, strategy: dict | None = None, **task_settings):
    if task == "ner":
        files = {"train": write_jsonl(tmp_path / "train.jsonl", ner_rows(16, seed=1)),
                 "dev": write_jsonl(tmp_path / "dev.jsonl", ner_rows(8, seed=2))}
    elif task == "qa":
        files = {"train": write_jsonl(tmp_path / "train.jsonl", qa_rows(16, seed=1)),
                 "dev": write_jsonl(tmp_path / "dev.jsonl", qa_rows(8, seed=2))}
    else:
        files = {"train": write_jsonl(tmp_path / "train.jsonl", sentiment_rows(24, seed=1)),
                 "dev": write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(12, seed=2))}
    config = tiny_config(tiny_model_dir, files, tmp_path / f"run-{task}", epochs=2)
    config["task"] = {"type": task, **task_settings}
    if strategy:
        config["strategy"] = strategy
    return transferlm.train(config).run_dir, files


def trained_case(tiny_model_dir, tmp_path, task_case: str, strategy: dict | None):
    """A run of one row of the contract matrix (tests/test_strategies.py), on that row's data."""
    files = data_files(task_case, tmp_path)
    config = tiny_config(tiny_model_dir, files, tmp_path / "run", epochs=2)
    config["task"] = TASK_CASES[task_case].settings
    config["data"].update(TASK_CASES[task_case].data)
    if strategy:
        config["strategy"] = strategy
    return transferlm.train(config).run_dir, files


TEXTS = ["the film was great", "a dull and boring story", "music"]
# Export parity joins the contract matrix: every task case that predicts from logits on the tiny BERT (generation
# and masked-lm runs are no predictors to export), plus the strategies that change what is saved.
CASES = {
    **{case: (case, None) for case, row in TASK_CASES.items()
       if row.backbone == "bert" and case not in NOT_PREDICTORS and row.settings["type"] != "causal-lm"},
    "multi-label-lora": ("multi-label", {"name": "lora", "r": 2}),
    # unit-length embeddings under the fitted logistic-regression head
    "contrastive": ("classification-mean-pooling", {"name": "contrastive", "pairs_per_example": 2}),
}


def test_every_exportable_task_of_the_matrix_is_exported():
    assert {TASK_CASES[case].settings["type"] for case, _ in CASES.values()} >= {"classification", "ner", "qa",
                                                                                 "regression"}


@pytest.mark.parametrize("case", CASES)
def test_fp32_export_predicts_as_the_run_does(tiny_model_dir, tmp_path, case):
    task_case, strategy = CASES[case]
    run, files = trained_case(tiny_model_dir, tmp_path, task_case, strategy)
    inputs = list(TASK_CASES[task_case].predict_inputs) or TEXTS
    report = export(run, tmp_path / "export")
    assert report.max_abs_logit_diff <= 1e-3 and report.parity_examples > 0
    exported = transferlm.load(tmp_path / "export")
    assert exported.backend == "onnx" and exported.model is None
    original = transferlm.load(run)
    ours, theirs = exported.predict(inputs), original.predict(inputs)
    assert _same(ours, theirs), (ours, theirs)
    assert exported.evaluate(files["dev"])[exported.task.default_metric] == pytest.approx(
        original.evaluate(files["dev"])[original.task.default_metric])
    manifest = json.loads((tmp_path / "export" / "run.json").read_text())
    assert manifest["backend"] == "onnx" and manifest["export"]["quantize"] is None
    # plain onnxruntime runs the graph on its own
    session = OnnxForward(tmp_path / "export" / MODEL_FILE)
    ids = torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]])
    feed = {"input_ids": ids, "attention_mask": (ids > 0).long(), "token_type_ids": torch.zeros_like(ids)}
    if "pair_input_ids" in session.input_names:  # a bi-encoder: the second text's inputs, of their own length
        feed |= {"pair_input_ids": ids[:, :3], "pair_attention_mask": (ids[:, :3] > 0).long(),
                 "pair_token_type_ids": torch.zeros_like(ids[:, :3])}
    out = session(**feed)
    assert out.shape[0] == 2


def _same(a, b, tolerance=1e-4) -> bool:
    """Equal structures; floats (probabilities, scores) within ``tolerance``."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], tolerance) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y, tolerance) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return abs(a - b) <= tolerance
    return a == b


def test_int8_export_reports_the_metric_beside_torch(tiny_model_dir, tmp_path):
    run, files = trained(tiny_model_dir, tmp_path, "classification")
    report = export(run, tmp_path / "int8", ExportSettings(quantize="int8", check=files["dev"]))
    assert report.metric == "accuracy" and report.check_examples == 12
    assert 0 <= report.onnx_metric <= 1 and 0 <= report.torch_metric <= 1
    assert len(transferlm.load(tmp_path / "int8").predict(["great film"])) == 1


def test_a_failed_parity_check_leaves_nothing_behind(tiny_model_dir, tmp_path):
    run, _ = trained(tiny_model_dir, tmp_path, "classification")
    with pytest.raises(ExportError, match="disagrees with torch"):
        export(run, tmp_path / "export", ExportSettings(tolerance=-1.0))  # any difference fails
    assert not (tmp_path / "export").exists()
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_the_same_export_again_is_done_but_another_one_is_refused(tiny_model_dir, tmp_path):
    run, _ = trained(tiny_model_dir, tmp_path, "classification")
    first = export(run, tmp_path / "export")
    written = (tmp_path / "export" / "run.json").stat().st_mtime_ns
    assert export(run, tmp_path / "export") == first  # the same command after it finished: nothing to redo
    assert (tmp_path / "export" / "run.json").stat().st_mtime_ns == written
    for other in (ExportSettings(quantize="int8"), ExportSettings(tolerance=1e-2)):  # other settings: refused
        with pytest.raises(ExportError, match="already exists"):
            export(run, tmp_path / "export", other)
    with pytest.raises(ExportError, match="already an ONNX export"):
        export(tmp_path / "export", tmp_path / "again")


def test_overwrite_never_touches_the_run_or_a_foreign_directory(tiny_model_dir, tmp_path):
    run, _ = trained(tiny_model_dir, tmp_path, "classification")
    with pytest.raises(ExportError, match="is the run directory"):
        export(run, run, overwrite=True)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not one"):
        export(run, other, overwrite=True)
    assert (other / "keep.txt").read_text() == "mine" and (run / "run.json").is_file()


@pytest.mark.slow
def test_bundled_minilm_exports_with_fused_attention_and_int8_keeps_its_predictions(tmp_path):
    rows = sentiment_rows(24, seed=1)
    files = {"train": write_jsonl(tmp_path / "train.jsonl", rows),
             "dev": write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(12, seed=2))}
    config = tiny_config("minilm", files, tmp_path / "run", max_steps=4, lr=1e-4)
    run = transferlm.train(config).run_dir
    fp32 = export(run, tmp_path / "fp32")
    assert fp32.max_abs_logit_diff <= 1e-3 and fp32.optimizer["applied"]
    assert fp32.optimizer["exporter"] == "torchscript"
    assert fp32.optimizer["fused"].get("Attention") == 6, fp32.optimizer  # one per layer
    int8 = export(run, tmp_path / "int8", ExportSettings(quantize="int8"))
    import onnx

    ops = Counter(node.op_type for node in onnx.load(str(tmp_path / "int8" / "model.onnx")).graph.node)
    assert ops["QAttention"] == 6 and ops["Attention"] == 0, ops
    assert abs(int8.onnx_metric - int8.torch_metric) <= 1 / 12 + 1e-9  # at most one of 12 examples flips
    assert int8.size_mb < fp32.size_mb / 2


@pytest.mark.parametrize("arch", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_decoder_classifiers_export_and_predict_as_the_run_does(request, arch, tmp_path):
    """Last-token pooling and pad = eos survive the export (the batch mixes lengths, so padding is exercised)."""
    run, files = trained(request.getfixturevalue(arch), tmp_path, "classification")
    report = export(run, tmp_path / "export")
    assert report.max_abs_logit_diff <= 1e-3 and report.parity_examples > 0
    exported, original = transferlm.load(tmp_path / "export"), transferlm.load(run)
    texts = ["the film was great", "a dull and boring story that went on and on", "music"]
    assert _same(exported.predict(texts), original.predict(texts))
    assert exported.evaluate(files["dev"])["accuracy"] == original.evaluate(files["dev"])["accuracy"]


@pytest.fixture()
def small_disk(tmp_path):
    """A 2 MiB tmpfs (needs root and mount(8), as CI has; skipped otherwise), unmounted afterwards."""
    import os
    import shutil
    import subprocess

    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk needs root and mount(8) for a small tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs failed here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def _fill(disk, leave: int) -> None:
    import shutil

    with (disk / "ballast").open("wb") as f:
        f.write(b"\0" * max(shutil.disk_usage(disk).free - leave, 0))


def test_a_full_disk_is_named_and_leaves_the_earlier_export_intact(tiny_model_dir, tmp_path, small_disk, capsys):
    from transferlm.cli.main import main

    run, _ = trained(tiny_model_dir, tmp_path, "classification")
    export(run, small_disk / "first")
    before = {p.name: p.stat().st_size for p in (small_disk / "first").iterdir()}
    _fill(small_disk, leave=16 * 1024)
    assert main(["export", str(run), "--output", str(small_disk / "second")]) == 1
    err = capsys.readouterr().err
    assert "DiskFullError" in err and "no space left on the disk" in err and "Traceback" not in err
    assert "then run the same command again" in err
    assert not (small_disk / "second").exists()
    assert {p.name: p.stat().st_size for p in (small_disk / "first").iterdir()} == before
    assert transferlm.load(small_disk / "first").predict(["good film"])  # the earlier export still works


def test_a_training_run_on_a_full_disk_gets_the_same_message(tiny_model_dir, tmp_path, small_disk, capsys):
    from transferlm.cli.main import main

    files = {"train": write_jsonl(tmp_path / "train.jsonl", sentiment_rows(24, seed=1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(12, seed=2))}
    config = tiny_config(tiny_model_dir, files, small_disk / "run", epochs=1)
    (tmp_path / "run.yaml").write_text(json.dumps(config))
    _fill(small_disk, leave=8 * 1024)
    assert main(["train", str(tmp_path / "run.yaml")]) == 1
    err = capsys.readouterr().err
    assert "DiskFullError" in err and "no space left on the disk" in err and "Traceback" not in err
