"""Data in memory (pandas, lists of dicts, Hugging Face datasets) and hf:// data sets, read like files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import transferlm
from conftest import ner_rows, sentiment_rows, tiny_config, write_csv
from transferlm.config.load import build_config
from transferlm.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLM_CACHE", str(tmp_path / "cache"))


def memory_config(model_dir, output, train, validation=None, **data):
    config = tiny_config(model_dir, {"train": "x", "dev": "x"}, output, epochs=1)
    config["data"] = {"train": train, "validation": validation, **data}
    return config


def test_a_dataframe_and_a_list_of_dicts_train_like_the_same_file(tiny_model_no_dropout, tmp_path):
    rows, dev = sentiment_rows(40, seed=1), sentiment_rows(12, seed=2)
    from_memory = transferlm.train(memory_config(tiny_model_no_dropout, tmp_path / "memory", pd.DataFrame(rows), dev))
    files = {"train": write_csv(tmp_path / "train.csv", rows), "dev": write_csv(tmp_path / "dev.csv", dev)}
    from_files = transferlm.train(tiny_config(tiny_model_no_dropout, files, tmp_path / "files", epochs=1))
    assert from_memory.summary.validation["accuracy"] == from_files.summary.validation["accuracy"]
    assert from_memory.summary.best_metric == from_files.summary.best_metric
    saved = build_config(json.loads(json.dumps(  # the run records what it was trained on
        __import__("yaml").safe_load((from_memory.run_dir / "transferlm.yaml").read_text()))))
    assert saved.data.sources["train"]["kind"] == "pandas.DataFrame" and saved.data.sources["train"]["rows"] == 40
    assert saved.data.sources["validation"]["kind"] == "list of dicts"
    assert len(saved.data.sources["train"]["sha256"]) == 64 and saved.data.train.is_file()
    card = (from_memory.run_dir / "README.md").read_text()
    assert "| train | 40 | 40 |" in card and "pandas.DataFrame" in card and str(saved.data.train) not in card


def test_the_same_data_in_memory_resumes_the_same_run(tiny_model_dir, tmp_path):
    from conftest import interrupted_after

    config = memory_config(tiny_model_dir, tmp_path / "run", pd.DataFrame(sentiment_rows(40, seed=1)),
                           sentiment_rows(12, seed=2))
    config["train"]["checkpoint_every"] = 2
    with interrupted_after(3), pytest.raises(KeyboardInterrupt):
        transferlm.train(config)
    config["data"]["train"] = pd.DataFrame(sentiment_rows(40, seed=1))  # rebuilt from scratch: same content
    assert transferlm.train(config, resume=True).summary.steps == 5


def test_memory_data_gets_the_same_errors_naming_the_split(tiny_model_dir, tmp_path):
    frame = pd.DataFrame(sentiment_rows(20, seed=1)).rename(columns={"text": "sentence"})
    with pytest.raises(DataError, match=r"data.train \(pandas.DataFrame, 20 rows\): column 'text' "
                                        r"\(data.text_column\) not found; columns are 'label', 'sentence'"):
        transferlm.train(memory_config(tiny_model_dir, tmp_path / "run", frame))
    with pytest.raises(ConfigError, match="a int is not data transferlm reads"):
        transferlm.train(memory_config(tiny_model_dir, tmp_path / "run", 42))
    with pytest.raises(ConfigError, match="data.format 'csv'.*leave data.format auto"):
        transferlm.train(memory_config(tiny_model_dir, tmp_path / "run", frame, format="csv"))


def test_a_datasets_dataset_dict_gives_the_splits_and_label_names(tiny_model_dir, tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})

    def dataset(rows):
        return datasets.Dataset.from_list([{"text": r["text"], "label": r["label"]} for r in rows], features=features)

    splits = datasets.DatasetDict({"train": dataset(sentiment_rows(40, seed=1)),
                                   "validation": dataset(sentiment_rows(12, seed=2)),
                                   "test": dataset(sentiment_rows(12, seed=3))})
    result = transferlm.train(memory_config(tiny_model_dir, tmp_path / "run", splits))
    assert result.test is not None and result.test["n"] == 12
    labels = json.loads((result.run_dir / "labels.json").read_text())
    saved_labels = json.dumps(labels)
    assert "pos" in saved_labels and "neg" in saved_labels  # ClassLabel ids came back as their names
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["data"]["train"]["labels"]["counts"] == {"neg": 20, "pos": 20}


def test_hf_scheme_loads_a_local_dataset_directory_and_fails_clearly_offline(tiny_model_dir, tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    folder = tmp_path / "reviews"
    folder.mkdir()
    write_csv(folder / "train.csv", sentiment_rows(40, seed=1))
    write_csv(folder / "validation.csv", sentiment_rows(12, seed=2))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    config = memory_config(tiny_model_dir, tmp_path / "run", f"hf://{folder}:train", f"hf://{folder}:validation")
    result = transferlm.train(config)
    sources = build_config(__import__("yaml").safe_load((result.run_dir / "transferlm.yaml").read_text())).data.sources
    assert sources["train"] == {"kind": f"hf://{folder}:train", "rows": 40, "sha256": sources["train"]["sha256"]}
    with pytest.raises(ConfigError, match="is not hf://NAME:SPLIT or hf://NAME:CONFIG:SPLIT"):
        build_config(memory_config(tiny_model_dir, tmp_path / "run2", "hf://just-a-name"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"cannot load hf://someone/no-such-set:train \(offline"):
        build_config(memory_config(tiny_model_dir, tmp_path / "run2", "hf://someone/no-such-set:train"))


def test_ner_rows_in_memory(tiny_model_dir, tmp_path):
    config = memory_config(tiny_model_dir, tmp_path / "run", ner_rows(16, seed=1), ner_rows(8, seed=2))
    config["task"] = {"type": "ner"}
    result = transferlm.train(config)
    assert "f1" in result.summary.validation


def test_a_datasets_ner_set_with_class_label_tags_and_pandas_missing_values(tiny_model_dir, tmp_path):
    datasets = pytest.importorskip("datasets")
    tags = ["O", "B-ORG", "I-ORG", "B-LOC"]
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "tags": datasets.Sequence(datasets.ClassLabel(names=tags))})

    def dataset(rows):  # as conll2003 ships: tag ids, names in the feature
        return datasets.Dataset.from_list([{"tokens": r["tokens"], "tags": [tags.index(t) for t in r["tags"]]}
                                           for r in rows], features=features)

    config = memory_config(tiny_model_dir, tmp_path / "ner", dataset(ner_rows(16, seed=1)), dataset(ner_rows(8, 2)))
    config["task"] = {"type": "ner"}
    metrics = json.loads((transferlm.train(config).run_dir / "metrics.json").read_text())
    assert set(metrics["data"]["train"]["labels"]["entities"]) == {"ORG", "LOC"}

    frame = pd.DataFrame(sentiment_rows(40, seed=1)).convert_dtypes()  # nullable dtypes: missing is pd.NA
    frame.loc[3, "text"] = pd.NA
    result = transferlm.train(memory_config(tiny_model_dir, tmp_path / "na", frame, sentiment_rows(12, seed=2),
                                            drop_empty=True))
    assert json.loads((result.run_dir / "metrics.json").read_text())["data"]["train"]["examples"] == 39
