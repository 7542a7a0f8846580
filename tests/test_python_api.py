"""The product from Python: the commands as functions with result objects, the scikit-learn estimator, quiet loading
in notebooks, and the runnable example examples/python_api.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import transferlm
from conftest import sentiment_rows, tiny_config, write_jsonl
from transferlm.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def files(tmp_path):
    return {"train": write_jsonl(tmp_path / "train.jsonl", sentiment_rows(40, seed=1)),
            "dev": write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(16, seed=2))}


def test_compare_returns_its_report_and_a_table(tiny_model_dir, files, tmp_path):
    config = tiny_config(tiny_model_dir, files, tmp_path / "exp", epochs=1)
    config["compare"] = {"members": ["frozen", "tfidf"], "seeds": [0]}
    result = transferlm.compare(config)
    assert result.output == tmp_path / "exp" and (result.output / "report.md").is_file()
    assert isinstance(result.table, pd.DataFrame)
    assert list(result.table["member"]) == ["frozen", "tfidf"] and list(result.table["kind"]) == ["transfer",
                                                                                                 "baseline"]
    assert result.table.loc[0, "mean"] == pytest.approx(result.report["members"][0]["summary"]["mean"])
    assert "frozen" in repr(result) and "<table" in result._repr_html_()
    # keyword arguments override the section; a bad one is the CLI's error
    again = transferlm.compare(config, seeds=[0], members=["tfidf"], overwrite=True)
    assert list(again.table["member"]) == ["tfidf"]
    with pytest.raises(ConfigError, match="seeds"):
        transferlm.compare(config, seeds="many")


def test_curve_and_tune_from_python(tiny_model_dir, files, tmp_path):
    pytest.importorskip("optuna")
    config = tiny_config(tiny_model_dir, files, tmp_path / "curve", epochs=1)
    curved = transferlm.curve(config, members=["tfidf"], seeds=[0], sizes=[4, "all"])
    assert set(curved.table.columns) >= {"member", "n_train", "mean", "std"} and len(curved.table) == 2
    tuned = transferlm.tune(tiny_config(tiny_model_dir, files, tmp_path / "tune", epochs=1), trials=2)
    assert len(tuned.table) == 2 and tuned.report["best"]["number"] in (0, 1)


def test_inspect_export_and_serve_from_python(tiny_model_dir, files, tmp_path):
    run = transferlm.train(tiny_config(tiny_model_dir, files, tmp_path / "run", epochs=1)).run_dir
    inspected = transferlm.inspect(run, files["dev"], tmp_path / "inspect", top=3)
    assert (tmp_path / "inspect" / "inspect.html").is_file()
    assert {"grouping", "value", "metric", "low", "high"} <= set(inspected.slices.columns)
    assert "calibration" in repr(inspected)
    pytest.importorskip("onnxruntime")
    report = transferlm.export(run, tmp_path / "onnx", quantize="int8")
    assert report.quantize == "int8" and (tmp_path / "onnx" / "model.onnx").is_file()
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    app = transferlm.serve(run, max_batch=4)
    with TestClient(app) as client:
        answer = client.post("/v1/predict", json={"inputs": ["the film was great"]})
    assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] in ("pos", "neg")


# --- scikit-learn ------------------------------------------------------------------------------------------------


def _texts_labels(n: int, seed: int):
    rows = sentiment_rows(n, seed)
    return [r["text"] for r in rows], np.array([1 if r["label"] == "pos" else 0 for r in rows])


@pytest.fixture()
def classifier(tiny_model_dir):
    from transferlm.sklearn import TransferClassifier

    return TransferClassifier(model=str(tiny_model_dir), epochs=2, lr=1e-2, batch_size=8, max_length=32,
                              config={"train": {"warmup_ratio": 0.1}})


def test_the_estimator_passes_sklearns_checks_that_apply_to_text(classifier):
    from sklearn.base import clone
    from sklearn.utils import estimator_checks as checks

    name = type(classifier).__name__
    for check in (checks.check_no_attributes_set_in_init, checks.check_parameters_default_constructible,
                  checks.check_get_params_invariance, checks.check_set_params, checks.check_estimator_cloneable,
                  checks.check_estimator_repr, checks.check_do_not_raise_errors_in_init_or_set_params,
                  checks.check_estimators_unfitted):
        check(name, clone(classifier))
    assert clone(classifier).get_params()["config"] == {"train": {"warmup_ratio": 0.1}}
    tags = classifier.__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array


def test_the_estimator_fits_predicts_and_scores_with_integer_labels(classifier):
    X, y = _texts_labels(40, seed=1)
    classifier.fit(X, y)
    assert list(classifier.classes_) == [0, 1]
    test_X, test_y = _texts_labels(12, seed=3)
    proba = classifier.predict_proba(test_X)
    assert proba.shape == (12, 2) and np.allclose(proba.sum(axis=1), 1)
    assert (classifier.predict(test_X) == classifier.classes_[proba.argmax(axis=1)]).all()
    assert classifier.score(test_X, test_y) == (classifier.predict(test_X) == test_y).mean()
    assert (classifier.run_dir_ / "run.json").is_file()
    with pytest.raises(DataError, match="takes texts; example 0 is a"):
        classifier.predict([[1.0, 2.0]][0])


def test_the_estimator_works_in_cross_val_predict_and_grid_search(classifier):
    from sklearn.model_selection import GridSearchCV, cross_val_predict

    X, y = _texts_labels(40, seed=1)
    predicted = cross_val_predict(classifier, X, y, cv=2)
    assert predicted.shape == (40,) and set(predicted) <= {0, 1}
    search = GridSearchCV(classifier, {"lr": [1e-2, 1e-3]}, cv=2).fit(X, y)
    assert search.best_params_["lr"] in (1e-2, 1e-3) and len(search.cv_results_["mean_test_score"]) == 2
    assert search.predict(X[:3]).shape == (3,)


# --- notebooks ---------------------------------------------------------------------------------------------------


def test_loading_in_python_prints_no_library_progress_bars_and_restores_their_settings(tiny_model_dir, files,
                                                                                      tmp_path):
    run = transferlm.train(tiny_config(tiny_model_dir, files, tmp_path / "run", epochs=1)).run_dir
    script = textwrap.dedent(f"""
        import transferlm
        from transformers.utils import logging
        predictor = transferlm.load({str(run)!r})
        print(repr(predictor))
        print(predictor.predict(["the film was great"])[0]["label"])
        print("bars", logging.is_progress_bar_enabled(), "verbosity", logging.get_verbosity())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Loading weights" not in done.stderr and "%|" not in done.stderr, done.stderr
    assert "bars True verbosity 30" in done.stdout  # a notebook's own transformers settings are left as they were
    assert "Predictor(classification" in done.stdout


def test_the_python_api_example_runs(tiny_model_dir, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "python_api.py"), "--model", str(tiny_model_dir),
                           "--output", str(tmp_path / "example")], capture_output=True, text=True, timeout=900,
                          cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for line in ("trained from a DataFrame", "compare:", "curve:", "tune: best validation", "inspect:",
                 "scikit-learn cross-validated accuracy", "exported", "served"):
        assert line in done.stdout, done.stdout


def test_progress_shows_in_a_jupyter_kernel_and_not_in_a_pipe(monkeypatch):
    import types

    from transferlm.training import callbacks

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not callbacks.interactive()

    def shell(kind):
        return types.SimpleNamespace(get_ipython=lambda: type(kind, (), {})())

    monkeypatch.setitem(sys.modules, "IPython", shell("TerminalInteractiveShell"))
    assert not callbacks.interactive()
    monkeypatch.setitem(sys.modules, "IPython", shell("ZMQInteractiveShell"))
    assert callbacks.interactive()
