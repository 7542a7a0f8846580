"""Domain adaptation: masked-LM masking and packing, and `adapt` end to end (its output trains as a classifier)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import sentence_encoder, sentiment_rows, write_csv
from transferlm.cli.main import main as cli
from transferlm.config import DataConfig, task_settings
from transferlm.config.schema import RunConfig
from transferlm.data.records import Record
from transferlm.errors import ConfigError, ModelSpecError
from transferlm.models.load import load_tokenizer
from transferlm.models.resolve import copy_sentence_pooling, trained_with_mean_pooling
from transferlm.runs.adapt import adapt_config
from transferlm.runs.task_settings import resolve_task_settings
from transferlm.tasks import build_task
from transferlm.tasks.masked_lm import IGNORE, SPECIAL, mask_block, target_count

MASK, VOCAB = 4, 1000


def mlm_task(**task):
    return build_task(task_settings("masked-lm", **task), DataConfig(train="x"))


# --- masking ---

def test_masking_predicts_15_percent_with_80_10_10_replacement():
    ids = [1] + list(range(100, 600)) + [2]
    words = [SPECIAL] + list(range(500)) + [SPECIAL]
    replaced = {"mask": 0, "random": 0, "kept": 0}
    for seed in range(200):
        masked, labels = mask_block(ids, words, np.random.default_rng(seed), 0.15, False, MASK, VOCAB)
        chosen = [i for i, label in enumerate(labels) if label != IGNORE]
        assert len(chosen) == target_count(words, 0.15) == 75
        assert 0 not in chosen and len(ids) - 1 not in chosen  # special tokens are never predicted
        assert all(labels[i] == ids[i] for i in chosen)
        assert all(masked[i] == ids[i] for i in range(len(ids)) if i not in chosen)
        for i in chosen:
            replaced["mask" if masked[i] == MASK else "kept" if masked[i] == ids[i] else "random"] += 1
    total = sum(replaced.values())  # 15,000 draws: the shares are within 1.5 points of 80/10/10
    assert abs(replaced["mask"] / total - 0.8) < 0.015
    assert abs(replaced["random"] / total - 0.1) < 0.015
    assert abs(replaced["kept"] / total - 0.1) < 0.015


def test_whole_word_masking_takes_every_piece_of_a_chosen_word():
    rng = np.random.default_rng(0)
    words = [SPECIAL]
    for word in range(120):  # words of 1 to 3 pieces
        words += [word] * int(rng.integers(1, 4))
    words.append(SPECIAL)
    ids = list(range(10, 10 + len(words)))
    for seed in range(50):
        _, labels = mask_block(ids, words, np.random.default_rng(seed), 0.15, True, MASK, VOCAB)
        for word in range(120):
            picked = {labels[i] != IGNORE for i, w in enumerate(words) if w == word}
            assert len(picked) == 1, f"word {word} is partly masked"
        count = sum(label != IGNORE for label in labels)
        assert count <= target_count(words, 0.15) and count >= target_count(words, 0.15) - 2


def test_blocks_pack_every_token_and_validation_masks_are_fixed(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    docs = [Record(r["text"], None, None, i) for i, r in enumerate(sentiment_rows(30, seed=4))]
    task = mlm_task()
    features = task.encode(tokenizer, docs, max_length=16)
    body = []
    for item in features.items:
        assert item["input_ids"][0] == tokenizer.cls_token_id and item["input_ids"][-1] == tokenizer.sep_token_id
        assert len(item["input_ids"]) <= 16
        body += item["input_ids"][1:-1]
    stream = []
    for doc in docs:
        stream += tokenizer(doc.text, add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]
    assert body == stream[:-1]  # documents joined by the separator; nothing lost
    again = task.encode(tokenizer, docs, max_length=16)
    assert [i["masked_ids"] for i in again.items] == [i["masked_ids"] for i in features.items]
    assert task.loss_units(features.items) == sum(target_count(i["words"], 0.15) for i in features.items)


def test_training_masks_are_drawn_afresh_from_the_seeded_generator(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    docs = [Record(r["text"], None, None, i) for i, r in enumerate(sentiment_rows(30, seed=4))]
    task = mlm_task()
    items = task.encode(tokenizer, docs, max_length=16).items
    torch.manual_seed(0)
    first, second = task.training_collate(items, 0), task.training_collate(items, 0)
    torch.manual_seed(0)
    assert torch.equal(task.training_collate(items, 0)["input_ids"], first["input_ids"])
    assert not torch.equal(first["labels"], second["labels"])
    assert torch.equal(task.collate(items, 0)["labels"], task.collate(items, 0)["labels"])


def test_blocks_with_the_same_tokens_get_their_own_masks(tiny_model_dir):
    """Processes of a distributed run share torch's seed: a block's own number must make its mask differ."""
    tokenizer = load_tokenizer(tiny_model_dir)
    text = " ".join(r["text"] for r in sentiment_rows(6, seed=4))
    task = mlm_task()
    items = task.encode(tokenizer, [Record(text, None, None, 0), Record(text, None, None, 1)], max_length=64).items
    twins = [dict(items[0], block=0), dict(items[0], block=1)]
    torch.manual_seed(0)
    batch = task.training_collate(twins, 0)
    assert not torch.equal(batch["labels"][0], batch["labels"][1])


def test_whole_word_masking_predicts_something_even_in_a_block_of_long_words():
    words = [SPECIAL] + [0] * 5 + [1] * 5 + [SPECIAL]  # 10 maskable tokens: 15 % is 2, every word has 5
    _, labels = mask_block(list(range(12)), words, np.random.default_rng(0), 0.15, True, MASK, VOCAB)
    assert sum(label != IGNORE for label in labels) == 5


def test_loss_weighs_each_block_by_its_count_even_when_whole_words_fall_short():
    """Uniform logits make every predicted token cost ln V, so the loss is ln V per unit of every block."""
    task = mlm_task(whole_word_mask=True)
    labels = torch.full((2, 6), IGNORE)
    labels[0, 1], labels[1, 1:3] = 7, torch.tensor([8, 9])  # block 0 predicts 1 token, block 1 two
    batch = {"labels": labels, "units": torch.tensor([2.0, 2.0])}  # block 0 fell one short of its 2
    outputs = type("Out", (), {"logits": torch.zeros(2, 6, 50)})
    terms = task.loss(outputs, batch)
    assert terms.count == 4
    assert math.isclose(float(terms.total), 4 * math.log(50), rel_tol=1e-6)


def test_logits_only_where_masked_give_the_full_output_layers_loss_gradients_and_scores(tiny_model_dir):
    from transferlm.tasks.base import Task

    tokenizer = load_tokenizer(tiny_model_dir)
    docs = [Record(r["text"], None, None, i) for i, r in enumerate(sentiment_rows(20, seed=4))]
    task = mlm_task()
    items = task.encode(tokenizer, docs, max_length=16).items
    model = task.build_model(tiny_model_dir, tokenizer).eval()
    batch = task.collate(items, tokenizer.pad_token_id)
    results = {}
    for name, forward in (("sparse", task.forward), ("full", lambda m, b: Task.forward(task, m, b))):
        model.zero_grad()
        outputs = forward(model, batch)
        terms = task.loss(outputs, batch)
        terms.total.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        with torch.no_grad():
            rows = task.output_rows(task.logits(forward(model, batch)), items)
        results[name] = (outputs.logits.shape, terms.total.item(), grads, torch.stack(rows))
    predicted = int((batch["labels"] != IGNORE).sum())
    assert results["sparse"][0] == (predicted, len(tokenizer))  # one row per predicted token, not per position
    assert results["full"][0] == (*batch["labels"].shape, len(tokenizer))
    assert math.isclose(results["sparse"][1], results["full"][1], rel_tol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(results["sparse"][2], results["full"][2], strict=True))
    assert torch.allclose(results["sparse"][3], results["full"][3], rtol=1e-5)


# --- adapt end to end ---

def text_file(path, n: int, seed: int):
    path.write_text("\n".join(r["text"] for r in sentiment_rows(n, seed=seed)) + "\n", encoding="utf-8")
    return path


def validation_perplexities(run_dir) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [row["perplexity"] for row in rows if row["event"] == "eval"]


def test_adapted_encoder_trains_as_a_classifier(tiny_model_no_dropout, tmp_path, capsys):
    train, dev = text_file(tmp_path / "domain.txt", 300, seed=1), text_file(tmp_path / "dev.txt", 60, seed=2)
    adapted = tmp_path / "adapted"
    assert cli(["adapt", "--model", str(tiny_model_no_dropout), "--train", str(train), "--validation", str(dev),
                "--documents", "lines", "--max-length", "32", "--epochs", "4", "--batch-size", "16", "--lr", "5e-3",
                "--whole-word-mask", "--eval-every", "5", "--no-progress", "--output", str(adapted)]) == 0
    assert f"transferlm train --model {adapted}" in capsys.readouterr().out
    saved = yaml.safe_load((adapted / "transferlm.yaml").read_text())
    assert saved["task"]["type"] == "masked-lm" and saved["task"]["whole_word_mask"] is True
    curve = validation_perplexities(adapted)
    vocabulary = len(load_tokenizer(adapted))  # what a uniform guess scores
    assert curve[-1] < curve[0] and curve[-1] < 0.7 * vocabulary, (curve, vocabulary)
    assert json.loads((adapted / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    assert not (adapted / "modules.json").exists()  # the checkpoint had no sentence-transformers pooling to keep

    files = {"train": write_csv(tmp_path / "train.csv", sentiment_rows(40, seed=3)),
             "dev": write_csv(tmp_path / "dev.csv", sentiment_rows(12, seed=5))}
    classifier = tmp_path / "classifier"
    assert cli(["train", "--model", str(adapted), "--train", str(files["train"]), "--validation",
                str(files["dev"]), "--strategy", "frozen", "--max-length", "32", "--epochs", "1", "--no-progress",
                "--output", str(classifier)]) == 0
    # A frozen backbone: the classifier's encoder is the adapted one, weight for weight.
    adapted_weights, trained = load_file(adapted / "model.safetensors"), load_file(classifier / "model.safetensors")
    encoder = [k for k in trained if k.startswith("bert.encoder.") or k.startswith("bert.embeddings.")]
    assert encoder and all(torch.equal(trained[k], adapted_weights[k]) for k in encoder)
    original = load_file(tiny_model_no_dropout / "model.safetensors")
    assert not torch.equal(original["embeddings.word_embeddings.weight"],
                           trained["bert.embeddings.word_embeddings.weight"])


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_an_adapted_sentence_encoder_keeps_its_mean_pooling(tiny_model_no_dropout, tmp_path, strategy):
    """On STS-B (1,000 pairs), adapted minilm fine-tuned as a bi-encoder tested at 84.14 Spearman; without the
    pooling config it was trained as a cross-encoder and tested at 77.95."""
    encoder = sentence_encoder(tiny_model_no_dropout, tmp_path / "encoder")
    adapted = tmp_path / "adapted"
    assert cli(["adapt", "--model", str(encoder), "--train", str(text_file(tmp_path / "domain.txt", 60, seed=1)),
                "--documents", "lines", "--max-length", "32", "--strategy", strategy, "--max-steps", "2",
                "--batch-size", "8", "--no-progress", "--output", str(adapted)]) == 0
    assert trained_with_mean_pooling(adapted)
    assert (adapted / "1_Pooling" / "config.json").read_text() == (encoder / "1_Pooling" / "config.json").read_text()
    config = RunConfig.model_validate({"task": {"type": "regression"}, "model": {"name": str(adapted)},
                                       "data": {"train": "x", "text_column": "a", "text_pair_column": "b"},
                                       "output": str(tmp_path / "run")})
    _, decided = resolve_task_settings(config, adapted)
    assert {r.key: r.value for r in decided}["task.pair_encoding"] == "bi"


def test_adapted_encoder_with_lora_trains_the_new_head_and_merges(tiny_model_no_dropout, tmp_path):
    train = text_file(tmp_path / "domain.txt", 200, seed=1)
    adapted = tmp_path / "adapted"
    assert cli(["adapt", "--model", str(tiny_model_no_dropout), "--train", str(train), "--documents", "lines",
                "--max-length", "32", "--strategy", "lora", "--lr", "1e-2", "--max-steps", "4", "--batch-size", "8",
                "--no-progress", "--output", str(adapted)]) == 0
    assert not (adapted / "adapter_config.json").exists()
    weights = load_file(adapted / "model.safetensors")
    # the new head's transform trained in full (modules_to_save), then merged back under its plain name
    assert "cls.predictions.transform.dense.weight" in weights
    assert not any("lora_" in k or "modules_to_save" in k for k in weights)
    original = load_file(tiny_model_no_dropout / "model.safetensors")
    assert not torch.equal(weights["bert.encoder.layer.0.attention.self.query.weight"],
                           original["encoder.layer.0.attention.self.query.weight"])  # LoRA merged into the query


def test_adapted_decoder_with_lora_is_merged_into_a_plain_model(tiny_llama_dir, tmp_path):
    train = text_file(tmp_path / "domain.txt", 200, seed=1)
    adapted = tmp_path / "adapted"
    assert cli(["adapt", "--model", str(tiny_llama_dir), "--train", str(train), "--documents", "lines",
                "--max-length", "32", "--strategy", "lora", "--lr", "1e-2", "--epochs", "2", "--batch-size", "8",
                "--no-progress",
                "--output", str(adapted)]) == 0
    saved = yaml.safe_load((adapted / "transferlm.yaml").read_text())
    assert saved["task"]["type"] == "causal-lm" and saved["strategy"]["merge"] is True
    assert (adapted / "model.safetensors").is_file() and not (adapted / "adapter_config.json").exists()
    curve = validation_perplexities(adapted)
    assert curve[-1] < curve[0], curve
    files = {"train": write_csv(tmp_path / "train.csv", sentiment_rows(40, seed=3)),
             "dev": write_csv(tmp_path / "dev.csv", sentiment_rows(12, seed=5))}
    assert cli(["train", "--model", str(adapted), "--train", str(files["train"]), "--validation",
                str(files["dev"]), "--strategy", "lora", "--max-steps", "3", "--no-progress",
                "--output", str(tmp_path / "classifier")]) == 0
    assert json.loads((tmp_path / "classifier" / "metrics.json").read_text())["validation"]["n"] == 12


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"task": {"type": "classification"}}, ConfigError, "adapt continues pretraining"),
        ({"strategy": {"name": "lora", "merge": False}}, ConfigError, "remove merge: false"),
    ],
)
def test_adapt_refuses_what_would_not_give_a_plain_pretrained_model(tiny_model_dir, tmp_path, settings, error,
                                                                     message):
    base = {"model": {"name": str(tiny_model_dir)}, "data": {"train": "x.txt"}, "output": str(tmp_path / "out"),
            **settings}
    with pytest.raises(error, match=message):
        adapt_config(base)


def test_masked_lm_refuses_a_decoder(tiny_llama_dir):
    with pytest.raises(ModelSpecError, match="has no masked-language-model form"):
        mlm_task().build_model(tiny_llama_dir, load_tokenizer(tiny_llama_dir))


def test_adapt_picks_the_objective_from_the_model(tiny_model_dir, tiny_gpt2_dir, tmp_path):
    for model, objective in ((tiny_model_dir, "masked-lm"), (tiny_gpt2_dir, "causal-lm")):
        config = adapt_config({"model": {"name": str(model)}, "data": {"train": "x.txt"}, "output": str(tmp_path)})
        assert config.task.type == objective


def test_only_pooling_folders_inside_the_checkpoint_are_copied(tiny_model_dir, tmp_path):
    encoder = sentence_encoder(tiny_model_dir, tmp_path / "hub" / "encoder")
    (tmp_path / "hub" / "outside").mkdir()
    (tmp_path / "hub" / "outside" / "secret.txt").write_text("not part of the checkpoint")
    modules = json.loads((encoder / "modules.json").read_text())
    (encoder / "modules.json").write_text(json.dumps([*modules, {"idx": 2, "path": "../outside", "type": "x.Dense"}]))
    target = tmp_path / "run" / "adapted"
    target.mkdir(parents=True)
    assert copy_sentence_pooling(encoder, target)
    assert (target / "1_Pooling" / "config.json").is_file()
    assert not (tmp_path / "run" / "outside").exists()
    assert not copy_sentence_pooling(tiny_model_dir, tmp_path / "plain")  # no sentence-transformers pooling
