"""Inputs longer than the model's window: windows, head-tail and truncation, and that no cut is silent."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers.modeling_outputs import SequenceClassifierOutput

import transferlm
from conftest import FILLER, NEGATIVE, POSITIVE, tiny_config, write_jsonl
from transferlm.config.schema import DataConfig, TrainConfig
from transferlm.data.records import Record
from transferlm.tasks.base import Features
from transferlm.tasks.classification import ClassificationSettings, ClassificationTask
from transferlm.tasks.long_inputs import (
    Template,
    choose_max_length,
    cut_summary,
    longest_first,
    plan,
    side_pieces,
    take,
)
from transferlm.training.sampler import max_batch_tokens, token_chunks


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transferlm.models.load import load_tokenizer
    from transferlm.models.resolve import resolve_model

    return load_tokenizer(resolve_model("minilm").path)


def make_task(pair: bool = False, labels=("neg", "pos"), **settings) -> ClassificationTask:
    task = ClassificationTask(ClassificationSettings(**settings),
                              DataConfig(train="x", text_pair_column="text_pair" if pair else None))
    task.fit_labels([Record("t", None, label, i) for i, label in enumerate(labels)], {})
    return task


def words(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(FILLER) for _ in range(n))


# --- planning windows ---
@pytest.mark.parametrize("n,room,stride", [(1, 8, None), (8, 8, 2), (9, 8, 2), (100, 8, 0), (100, 8, 3),
                                           (100, 8, 7), (1000, 126, None), (257, 256, 64)])
def test_windows_cover_every_token_and_hold_at_most_the_window(n, room, stride):
    windows = side_pieces(n, room, "windows", stride)
    seen = [0] * n
    for (start, end), in windows:
        assert 0 <= start < end <= n and end - start <= room
        for t in range(start, end):
            seen[t] += 1
    assert min(seen) >= 1  # every token is read at least once
    if n > room:
        overlap = room // 4 if stride is None else min(stride, room // 2)
        starts = [w[0][0] for w in windows]
        # consecutive windows share at least the stride (the last one, aligned to the end, may share more)
        assert all(a + room - b >= overlap for a, b in zip(starts, starts[1:], strict=False))
        assert windows[-1][0][1] == n


def test_head_tail_keeps_exactly_the_first_and_last_tokens():
    ids = list(range(1000))
    [(pieces, none)], cut = plan(1000, None, 510, "head-tail", None)
    assert none is None and pieces == ((0, 128), (618, 1000))  # Sun et al.: 128 + 382 of 510
    assert take(ids, pieces) == ids[:128] + ids[-382:]
    assert cut.as_dict() == {"tokens": 1000, "kept": 510, "cut": 490, "side": "text"}
    [(short, _)], _ = plan(126, None, 126, "head-tail", None)  # fits: nothing cut
    assert short == ((0, 126),)


def test_longest_first_matches_the_tokenizer_on_random_pairs(minilm_tokenizer):
    """truncate builds its inputs itself (to count what it cuts): token for token what transformers builds."""
    template = Template.probe(minilm_tokenizer)
    rng = random.Random(0)
    for i in range(300):
        a = words(rng.randint(0, 60), i)
        b = words(rng.randint(1, 60), -i) if i % 2 else None
        length = rng.choice([8, 9, 16, 17, 32, 64])
        reference = minilm_tokenizer(a, b, truncation=True, max_length=length)
        ia = minilm_tokenizer(a, add_special_tokens=False)["input_ids"]
        ib = None if b is None else minilm_tokenizer(b, add_special_tokens=False)["input_ids"]
        [(pa, pb)], _ = plan(len(ia), None if ib is None else len(ib), length - template.added(b is not None),
                             "truncate", None)
        item = template.build(take(ia, pa), None if ib is None else take(ib, pb))
        assert item["input_ids"] == reference["input_ids"]
        assert item["token_type_ids"] == reference["token_type_ids"]
    assert longest_first(10, 3, 8) == (5, 3) and longest_first(3, 10, 8) == (3, 5)
    assert longest_first(10, 10, 7) == (3, 4)


def test_template_of_a_decoder_tokenizer_adds_nothing(tiny_gpt2_dir):
    from transferlm.models.load import load_tokenizer

    tokenizer = load_tokenizer(tiny_gpt2_dir)
    template = Template.probe(tokenizer)
    ids = tokenizer("great film", add_special_tokens=False)["input_ids"]
    assert template.build(ids, None)["input_ids"] == tokenizer("great film")["input_ids"]


# --- counting what is cut ---
def test_truncation_counts_on_hand_built_inputs(minilm_tokenizer):
    # "movie" is one WordPiece token: 300 of them are 300 tokens.
    long, short = " ".join(["movie"] * 300), "good"
    records = [Record(long, None, "pos", 1), Record(short, None, "neg", 2)]
    features = make_task(long_inputs="truncate").encode(minilm_tokenizer, records, max_length=128)
    assert len(features) == 2 and features.cuts[0].as_dict() == {"tokens": 300, "kept": 126, "cut": 174,
                                                                  "side": "text"}
    assert 1 not in features.cuts
    summary = cut_summary(dict(features.cuts), 2)
    assert summary["truncated"] == 1 and summary["share"] == 0.5 and summary["tokens_cut_max"] == 174
    windows = make_task(long_inputs="windows").encode(minilm_tokenizer, records, max_length=128)
    assert not windows.cuts and [item["example"] for item in windows.items].count(0) == 3  # 300 in 126, 31 shared

    pairs = [Record("good", long, "pos", 1), Record(long, long, "neg", 2)]
    cut = make_task(pair=True, long_inputs="truncate").encode(minilm_tokenizer, pairs, max_length=64).cuts
    assert cut[0].side == "text_pair" and cut[0].kept == 61 and cut[1].side == "both"
    # windows keep the shorter side whole and slide over the longer one
    items = make_task(pair=True).encode(minilm_tokenizer, pairs[:1], max_length=64).items
    assert all(item["input_ids"][1] == minilm_tokenizer.convert_tokens_to_ids("good") for item in items)
    assert len(items) > 1 and all(len(item["input_ids"]) <= 64 for item in items)


# --- training weighs documents, not windows; outputs are aggregated per document ---
def test_per_document_loss_weighs_documents_equally(minilm_tokenizer):
    task = make_task()
    records = [Record("good", None, "pos", 1), Record(" ".join(["movie"] * 400), None, "neg", 2)]
    items = task.encode(minilm_tokenizer, records, max_length=64).items
    counts = [sum(item["example"] == n for item in items) for n in (0, 1)]
    assert counts[0] == 1 and counts[1] >= 8
    assert task.loss_units(items) == pytest.approx(2.0)  # two documents, however many windows
    torch.manual_seed(0)
    logits = torch.randn(len(items), 2)
    batch = task.collate_targets(items)
    terms = task.loss(SequenceClassifierOutput(logits=logits), batch)
    per_window = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="none")
    expected = per_window[0] + per_window[1:].mean()  # document 1's windows share one document's weight
    assert terms.total.item() == pytest.approx(expected.item(), rel=1e-6)


def test_document_output_aggregates_hand_built_window_logits():
    items = [{"example": 0, "labels": 1}, {"example": 1, "labels": 0}, {"example": 1, "labels": 0},
             {"example": 1, "labels": 0}, {"example": 2, "labels": 0}]
    rows = [torch.tensor([0.0, 1.0]), torch.tensor([3.0, 0.0]), torch.tensor([-1.0, 2.0]), torch.tensor([1.0, 1.0]),
            torch.tensor([2.0, 5.0])]
    features = Features(items, [1] * 5)
    mean, firsts = make_task().documents(rows, features)
    assert torch.allclose(mean, torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 5.0]]))
    assert [f["labels"] for f in firsts] == [1, 0, 0]
    top, _ = make_task(window_aggregate="max").documents(rows, features)
    assert torch.allclose(top, torch.tensor([[0.0, 1.0], [3.0, 2.0], [2.0, 5.0]]))
    task = make_task()
    assert task.metrics(rows, features)["accuracy"] == pytest.approx(2 / 3)  # doc 2 wrong; doc 1's mean: class 0
    assert [p["label"] for p in task.predictions(rows, features, [None] * 3)] == ["pos", "neg", "pos"]


# --- lengths ---
def test_max_length_auto_holds_most_inputs_within_the_limit():
    assert choose_max_length([10] * 95 + [1000] * 5, 512) == 32
    assert choose_max_length(list(range(1, 201)), 512) == 192  # 190 of 200 hold in 190 tokens: rounded up
    assert choose_max_length([900] * 10, 512) == 512
    assert choose_max_length([], 512) == 128


def test_token_chunks_keep_each_pass_within_the_budget():
    lengths = [10, 50, 30, 50, 20, 5]
    chunks = token_chunks(range(6), lengths, 100)
    assert sorted(j for c in chunks for j in c) == list(range(6))
    assert all(len(c) * max(lengths[j] for j in c) <= 100 for c in chunks)
    assert token_chunks([0, 1], [500, 10], 100) == [[0], [1]]  # longer than the budget: alone
    assert token_chunks([0, 1], [500, 10], None) == [[0, 1]]
    assert max_batch_tokens(TrainConfig(), "cpu") == 4096 and max_batch_tokens(TrainConfig(), "cuda") is None


def long_rows(n: int, seed: int) -> list[dict]:
    """Reviews of 20 to 80 words whose label is said once, somewhere in the middle."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        body = [rng.choice(FILLER) for _ in range(rng.randint(20, 80))]
        body.insert(rng.randrange(len(body)), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        rows.append({"text": " ".join(body), "label": label})
    return rows


def test_split_passes_give_the_same_step_as_one_pass(tiny_model_no_dropout, tmp_path):
    """train.max_batch_tokens only splits the work: the loss and the updated weights are those of one pass."""
    files = {"train": write_jsonl(tmp_path / "train.jsonl", long_rows(16, 1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", long_rows(8, 2))}
    weights = {}
    for name, budget in (("one", None), ("split", 64)):
        config = tiny_config(tiny_model_no_dropout, files, tmp_path / name, max_steps=1, batch_size=16,
                             max_batch_tokens=budget)
        config["task"] = {"type": "classification", "long_inputs": "truncate"}
        result = transferlm.train(config)
        weights[name] = transferlm.load(result.run_dir).model.state_dict()
    for key, value in weights["one"].items():
        assert torch.allclose(value, weights["split"][key], atol=1e-6), key


def test_long_documents_train_predict_and_say_what_was_cut(tiny_model_dir, tmp_path):
    files = {"train": write_jsonl(tmp_path / "train.jsonl", long_rows(24, 1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", long_rows(8, 2)),
             "test": write_jsonl(tmp_path / "test.jsonl", long_rows(8, 3))}
    runs = {}
    for mode in ("windows", "truncate"):
        config = tiny_config(tiny_model_dir, files, tmp_path / mode, epochs=1)
        config["model"]["max_length"] = "auto"
        config["data"]["test"] = str(files["test"])
        config["task"] = {"type": "classification", "long_inputs": mode}
        runs[mode] = transferlm.train(config).run_dir
    metrics = json.loads((runs["truncate"] / "metrics.json").read_text())
    cut = metrics["training"]["truncation"]
    assert cut["train"]["inputs"] == 24 and cut["train"]["truncated"] > 0 and cut["test"]["inputs"] == 8
    windows = json.loads((runs["windows"] / "metrics.json").read_text())["training"]["truncation"]
    assert all(split["truncated"] == 0 for split in windows.values())
    import yaml

    saved = yaml.safe_load((runs["windows"] / "transferlm.yaml").read_text())
    assert saved["model"]["max_length"] == 64  # auto: longer than 95 % of these reviews, capped by the model's 64
    text = " ".join(r["text"] for r in long_rows(3, 9))  # 60 to 240 words: longer than 64 tokens
    [truncated] = transferlm.load(runs["truncate"]).predict([text])
    assert truncated["truncated"]["side"] == "text" and truncated["truncated"]["cut"] > 0
    [whole] = transferlm.load(runs["windows"]).predict([text])
    assert "truncated" not in whole and set(whole["probabilities"]) == {"neg", "pos"}
    evaluated = transferlm.load(runs["truncate"]).evaluate(files["test"])
    assert evaluated["truncation"]["truncated"] == cut["test"]["truncated"]


def test_a_run_saved_before_long_inputs_keeps_truncating(tiny_model_dir, tmp_path):
    files = {"train": write_jsonl(tmp_path / "train.jsonl", long_rows(16, 1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", long_rows(8, 2))}
    run = transferlm.train(tiny_config(tiny_model_dir, files, tmp_path / "run", max_steps=1)).run_dir
    import yaml

    saved = yaml.safe_load((run / "transferlm.yaml").read_text())
    for key in ("long_inputs", "stride", "window_aggregate"):
        del saved["task"][key]  # as 0.1 wrote it
    (run / "transferlm.yaml").write_text(yaml.safe_dump(saved))
    assert transferlm.load(run).task.task_config.long_inputs == "truncate"


MEGABYTE_PREDICT = """
import resource, sys, transferlm
predictor = transferlm.load(sys.argv[1])
predictor.predict(["good"])  # model loaded, one forward pass: the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
text = " ".join(["film plot actor scene"] * 52_500)  # 1 MB, 210,000 tokens
[prediction] = predictor.predict([text])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) // 1024, "truncated" in prediction, sorted(prediction["probabilities"]))
"""


def test_a_megabyte_input_is_read_whole_in_bounded_memory(tiny_model_dir, tmp_path):
    files = {"train": write_jsonl(tmp_path / "train.jsonl", long_rows(16, 1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", long_rows(8, 2))}
    run = transferlm.train(tiny_config(tiny_model_dir, files, tmp_path / "run", max_steps=1)).run_dir
    done = subprocess.run([sys.executable, "-c", MEGABYTE_PREDICT, str(run)], capture_output=True, text=True,
                          check=True, timeout=600)
    grown_mb, truncated, labels = done.stdout.split(maxsplit=2)
    assert truncated == "False" and "neg" in labels
    # windows go through the model a batch at a time: what grows is the token ids and one output row per window
    assert int(grown_mb) < 1024, f"a 1 MB input grew peak memory by {grown_mb} MB"


def test_compare_pairs_long_documents_example_by_example(tiny_model_dir, tmp_path):
    """compare (its child runs, the written splits, the per-example pairing) reads long documents whole."""
    from transferlm.config.load import build_config
    from transferlm.experiments.compare import compare
    from transferlm.experiments.config import CompareSettings

    files = {"train": write_jsonl(tmp_path / "train.jsonl", long_rows(24, 1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", long_rows(12, 2))}
    config = build_config(tiny_config(tiny_model_dir, files, tmp_path / "exp", epochs=1))
    report = compare(config, CompareSettings(members=["full", "tfidf"], seeds=[0]))
    rows = {m["title"]: m for m in report["members"]}
    scores = rows["full"]["runs"][0]["example_scores"]["validation"]
    assert len(scores) == 12 and sum(scores) / 12 == pytest.approx(rows["full"]["values"][0])  # documents, not windows
    run = Path(rows["full"]["runs"][0]["run_dir"])
    truncation = json.loads((run / "metrics.json").read_text())["training"]["truncation"]
    assert truncation["validation"]["model_inputs"] > 12 and truncation["validation"]["truncated"] == 0


def test_inference_batches_stay_within_a_token_budget():
    from transferlm.inference.batches import inference_order

    lengths = [512] * 40 + [10] * 100
    batches = inference_order(lengths, batch_size=64, max_tokens=16_384)
    assert sorted(j for b in batches for j in b) == list(range(140))
    assert all(len(b) * max(lengths[j] for j in b) <= 16_384 for b in batches)
    assert max(len(b) for b in batches) == 64  # short inputs still go a full batch at a time
    assert inference_order([100_000], 64) == [[0]]  # longer than the budget: alone
