"""Regression on text pairs as a bi-encoder (task.pair_encoding: bi): each text embedded on its own, the output read
off the two embeddings' cosine."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import yaml

import transferlm
from conftest import sentence_encoder, tiny_config, write_jsonl
from test_regression import fit, make_task, similar_pairs
from transferlm.config import build_config
from transferlm.data.records import Record
from transferlm.errors import ConfigError
from transferlm.runs import layout
from transferlm.runs.task_settings import resolve_task_settings
from transferlm.tasks.bi_encoder import BiEncoderRegressor


def bi_task(**settings):
    return make_task(pair=True, pair_encoding="bi", long_inputs="truncate", **settings)


def test_each_text_is_encoded_on_its_own_and_cut_by_itself(tiny_model_no_dropout):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_no_dropout)
    task = bi_task()
    long_text = " ".join(["film"] * 40)
    features = task.encode(tokenizer, [Record("a film", "the story", "2.5", 1), Record(long_text, "a", "1", 2)],
                           max_length=16)
    first, second = features.items
    tokens = tokenizer.convert_ids_to_tokens
    assert tokens(first["input_ids"]) == ["[CLS]", "a", "film", "[SEP]"]
    assert tokens(first["pair_input_ids"]) == ["[CLS]", "the", "story", "[SEP]"]
    assert first["labels"] == 2.5 and first["token_type_ids"] == [0] * 4
    assert len(second["input_ids"]) == 16 and tokens(second["pair_input_ids"]) == ["[CLS]", "a", "[SEP]"]
    cut = features.cuts[1]  # only the long first text lost tokens: 40 of them, 14 kept
    assert (cut.tokens, cut.kept, cut.side) == (41, 15, "text") and 0 not in features.cuts
    assert features.lengths == [8, 19]
    assert task.input_lengths(tokenizer, [Record(long_text, "a", "1", 2)]) == [42]  # the longer text must fit
    batch = task.collate(features.items, tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (2, 16) and batch["pair_input_ids"].shape == (2, 4)
    assert batch["pair_attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["labels"].tolist() == [2.5, 1.0]


def test_it_starts_from_the_pretrained_cosine_trains_and_reloads(tmp_path, tiny_model_no_dropout):
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_no_dropout)
    task = bi_task()
    train = similar_pairs(48, 1)
    assert task.fit_labels(train, {}) == []
    model = task.build_model(tiny_model_no_dropout, tokenizer)
    assert isinstance(model, BiEncoderRegressor) and task.head_parameter_names(model) == {"scale", "bias"}
    features = task.encode(tokenizer, train, max_length=32)
    batch = task.collate(features.items, tokenizer.pad_token_id)
    model.eval()
    with torch.no_grad():
        values = task.values(task.logits(model(**task.model_inputs(batch))))
        pooled = model.embeddings(**task.model_inputs(batch))
    # before training: the lowest target at cosine 0, the highest at cosine 1 (targets 0..4 here)
    cosine = F.cosine_similarity(pooled[:, 0], pooled[:, 1], dim=-1)
    assert torch.allclose(values, 0.0 + 4.0 * cosine, atol=1e-5)

    losses = fit(task, model, features, tokenizer.pad_token_id, epochs=6)
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses

    model.eval()
    with torch.no_grad():
        outputs = task.logits(model(**task.model_inputs(batch)))
        cached = task.feature_head(model)(model.embeddings(**task.model_inputs(batch))).logits
    assert torch.allclose(outputs, cached, atol=1e-6)  # the frozen strategy's cached features give the same
    task.save_model(model, tmp_path / "model")
    reloaded = task.load_model(tmp_path / "model").eval()
    with torch.no_grad():
        assert torch.allclose(outputs, task.logits(reloaded(**task.model_inputs(batch))), atol=1e-5)
    with pytest.raises(ConfigError, match="not a bi-encoder's head"):
        make_task(pair=True, pooling="mean").save_model(
            make_task(pair=True, pooling="mean").build_model(tiny_model_no_dropout, tokenizer), tmp_path / "mean")
        task.load_model(tmp_path / "mean")


def test_settings_a_bi_encoder_cannot_take_are_refused_together():
    with pytest.raises(ConfigError) as error:
        make_task(pair=False, pair_encoding="bi", pooling="cls")
    message = str(error.value)
    assert "task.pair_encoding: bi compares two texts; set data.text_pair_column" in message
    assert "task.long_inputs: windows makes several inputs" in message
    assert "task.pooling: cls; a bi-encoder embeds each text by the mean" in message
    with pytest.raises(ConfigError, match="explain: a bi-encoder .* explain a cross-encoder run instead"):
        bi_task().explanation_inputs(None, Record("a", "b", None, 0), 32)


def test_auto_is_bi_on_a_sentence_embedding_checkpoint_with_pairs(tmp_path, tiny_model_dir):
    encoder = sentence_encoder(tiny_model_dir, tmp_path / "encoder")

    def resolved(model, pairs: bool):
        config = build_config({"model": {"name": str(model)}, "task": {"type": "regression"},
                               "data": {"train": "unused", "text_pair_column": "text_pair" if pairs else None},
                               "output": str(tmp_path / "out")})
        config, decided = resolve_task_settings(config, model)
        return {k: getattr(config.task, k) for k in ("pair_encoding", "long_inputs", "pooling")}, decided

    settings, decided = resolved(encoder, pairs=True)
    assert settings == {"pair_encoding": "bi", "long_inputs": "truncate", "pooling": "mean"}
    assert [d.key for d in decided] == ["task.pair_encoding", "task.long_inputs", "task.pooling"]
    assert "a bi-encoder starts from its own cosine similarity" in decided[0].because
    assert resolved(tiny_model_dir, pairs=True)[0] == {"pair_encoding": "cross", "long_inputs": "windows",
                                                       "pooling": "cls"}
    assert resolved(encoder, pairs=False)[0] == {"pair_encoding": "auto", "long_inputs": "windows",
                                                 "pooling": "mean"}


def test_train_evaluate_predict_and_export_a_bi_encoder_run(tmp_path, tiny_model_dir):
    pytest.importorskip("onnxruntime")
    from transferlm.exporting.onnx import ExportSettings, export

    encoder = sentence_encoder(tiny_model_dir, tmp_path / "encoder")

    def rows(pairs):
        return [{"text": p.text, "text_pair": p.text_pair, "label": p.label} for p in pairs]

    files = {"train": write_jsonl(tmp_path / "train.jsonl", rows(similar_pairs(40, 1))),
             "dev": write_jsonl(tmp_path / "dev.jsonl", rows(similar_pairs(20, 2)))}
    config = tiny_config(encoder, files, tmp_path / "run", epochs=1)
    config["task"] = {"type": "regression"}
    config["data"]["text_pair_column"] = "text_pair"
    result = transferlm.train(build_config(config))
    saved = yaml.safe_load((result.run_dir / layout.CONFIG).read_text())["task"]
    assert (saved["pair_encoding"], saved["pooling"], saved["long_inputs"]) == ("bi", "mean", "truncate")
    predictor = transferlm.load(result.run_dir)
    assert isinstance(predictor.model, BiEncoderRegressor)
    scores = [p["score"] for p in predictor.predict([("a film", "a film"), ("a film", "the story")])]
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)

    report = export(result.run_dir, tmp_path / "onnx", ExportSettings())
    assert report.max_abs_logit_diff < 1e-3
    onnx = transferlm.load(tmp_path / "onnx")
    assert [p["score"] for p in onnx.predict([("a film", "a film"), ("a film", "the story")])] == pytest.approx(
        scores, abs=1e-3)
