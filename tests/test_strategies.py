"""Contract tests over the strategy registry: every strategy x task trains, freezes what it says,
saves and reloads to identical outputs. Adding a strategy or task means adding one line below."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

import transferlm
from conftest import POSITIVE, ner_rows, qa_rows, scored_pairs, sentiment_rows, tiny_config, write_jsonl
from transferlm.config import DataConfig, strategy_settings, task_settings
from transferlm.errors import ConfigError
from transferlm.models.load import load_tokenizer
from transferlm.runs import train as train_module
from transferlm.strategies import STRATEGIES, build_strategy, count_parameters
from transferlm.tasks import TASKS, build_task

LAYER = re.compile(r"encoder\.layer\.(\d+)\.")


@dataclass(frozen=True)
class Arch:
    """Where a tiny test backbone keeps its parameters, written out by hand (not asked of the code under test)."""

    fixture: str  # the conftest fixture giving its directory (dropout 0 where a run must be deterministic)
    deterministic_fixture: str
    backbone: tuple[str, ...]  # name prefixes of backbone parameters
    layer: str  # name infix of transformer layer {i}
    above: tuple[str, ...]  # backbone parameters above the layer stack (a final norm)
    embeddings: tuple[str, ...]


ARCHS = {
    "bert": Arch("tiny_model_dir", "tiny_model_no_dropout", ("bert.", "backbone."), "encoder.layer.{}.", (),
                 ("embeddings.",)),
    "llama": Arch("tiny_llama_dir", "tiny_llama_dir", ("model.",), "model.layers.{}.", ("model.norm.",),
                  ("embed_tokens.",)),
    "gpt2": Arch("tiny_gpt2_dir", "tiny_gpt2_dir", ("transformer.",), "transformer.h.{}.", ("transformer.ln_f.",),
                 (".wte.", ".wpe.")),
}


def _plain(name: str) -> str:
    return name.replace("base_model.model.", "")


def _in_head(name: str, arch: Arch = ARCHS["bert"]) -> bool:
    plain = _plain(name)
    return not plain.startswith(arch.backbone) or ".pooler." in plain


# strategy case -> (strategy config, predicate over (parameter name, arch) for what must train)
STRATEGY_CASES = {
    "full": ({"name": "full"}, lambda n, a: True),
    "frozen": ({"name": "frozen"}, _in_head),
    "frozen-uncached": ({"name": "frozen", "cache_features": False}, _in_head),
    "last-n": (
        {"name": "last-n", "layers": 1},
        lambda n, a: _in_head(n, a) or a.layer.format(1) in n or _plain(n).startswith(a.above),
    ),
    "lora": ({"name": "lora", "r": 2}, lambda n, a: "lora_" in n or ".modules_to_save." in n),
    "lora-merged": (
        {"name": "lora", "r": 2, "merge": True},
        lambda n, a: "lora_" in n or ".modules_to_save." in n,
    ),
    "bitfit": ({"name": "bitfit"}, lambda n, a: _in_head(n, a) or n.endswith(".bias")),
    "full+layer-lr-decay": ({"name": "full", "layer_lr_decay": 0.5}, lambda n, a: True),
    "last-n+gradual": (
        {"name": "last-n", "layers": 2, "gradual_unfreeze": True},
        lambda n, a: not any(e in "." + n for e in a.embeddings),
    ),
    # stage 1 trains the encoder; the head is fitted after the loop. Few pairs: one batch holds them all.
    "contrastive": ({"name": "contrastive", "pairs_per_example": 2}, lambda n, a: not _in_head(n, a)),
}
def multilabel_rows(n: int, seed: int = 5) -> list[dict]:
    rows = sentiment_rows(n, seed=seed)
    # a second label marks texts containing a strongly positive word, so examples carry 1 or 2 labels
    return [
        {"text": r["text"], "label": [r["label"]] + (["strong"] if any(w in r["text"] for w in POSITIVE[:3]) else [])}
        for r in rows
    ]


def lm_chat_rows(n: int, seed: int = 1) -> list[dict]:
    rows = sentiment_rows(n, seed=seed)
    return [{"messages": [{"role": "user", "content": r["text"]}, {"role": "assistant", "content": r["label"]}]}
            for r in rows]


def long_rows(n: int, seed: int) -> list[dict]:
    """Sentiment rows said five times over: longer than the tests' 32-token window, so they are read in windows."""
    return [{**r, "text": " ".join([r["text"]] * 5)} for r in sentiment_rows(n, seed)]


LONG_TEXT = " ".join(["the film was great and the music was lovely"] * 6)  # 54 tokens: windows of 32


def imbalanced(rows_of):
    """3:1 classes in training (a fresh head, with uniform outputs, has an unambiguous first step to take)."""
    def rows(n: int, seed: int) -> list[dict]:
        rows = rows_of(2 * n if seed == 1 else n, seed)
        return rows[: n * 3 // 4] + rows[n: n + n // 4] if seed == 1 else rows
    return rows


@dataclass(frozen=True)
class TaskCase:
    """One row of the contract matrix: a task's settings, rows of its data (``rows(n, seed)``: seed 1 trains, 2
    validates), the file they are written to (.jsonl rows, or .txt documents), the tiny backbone, and what
    ``predict`` takes (default: text strings)."""

    settings: dict
    rows: Callable[[int, int], list[dict]] = imbalanced(sentiment_rows)
    suffix: str = ".jsonl"
    backbone: str = "bert"
    predict_inputs: tuple = ()
    data: dict = field(default_factory=dict)  # data settings besides the files (a text pair column)


TASK_CASES = {
    "classification": TaskCase({"type": "classification"}),
    "classification-mean-pooling": TaskCase({"type": "classification", "pooling": "mean"}),
    "multi-label": TaskCase({"type": "classification", "multi_label": True}, imbalanced(multilabel_rows)),
    "multi-label-mean-pooling": TaskCase({"type": "classification", "multi_label": True, "pooling": "mean"},
                                         imbalanced(multilabel_rows)),
    "ner": TaskCase({"type": "ner"}, ner_rows),
    "qa": TaskCase({"type": "qa"}, qa_rows, predict_inputs=(
        ("which price", "the bank was great"), {"question": "a b", "context": "stock market"})),
    "classification-llama": TaskCase({"type": "classification"}, backbone="llama"),
    "classification-gpt2": TaskCase({"type": "classification"}, backbone="gpt2"),
    "causal-lm": TaskCase({"type": "causal-lm"}, lm_chat_rows, backbone="llama"),  # chat data
    "causal-lm-gpt2": TaskCase({"type": "causal-lm"}, sentiment_rows, ".txt", "gpt2"),  # plain text, packed
    # plain text; the tiny BERT has no masked-LM head: a new one
    "masked-lm": TaskCase({"type": "masked-lm"}, sentiment_rows, ".txt"),
    "classification-windows": TaskCase({"type": "classification", "long_inputs": "windows", "stride": 4},
                                       imbalanced(long_rows), predict_inputs=(LONG_TEXT, "music")),
    "regression": TaskCase({"type": "regression"},
                           lambda n, seed: [{**r, "label": len(r["text"]) / 10} for r in sentiment_rows(n, seed)]),
    "regression-bi-encoder": TaskCase({"type": "regression", "pair_encoding": "bi", "long_inputs": "truncate"},
                                      scored_pairs, data={"text_pair_column": "text_pair"},
                                      predict_inputs=(("the film was great", "music"), ("a dull story", "a film"))),
}
# (task case, strategy case) -> the error a strategy that cannot apply must give
REFUSED = {
    ("classification-llama", "bitfit"): "has no bias parameters in its backbone",
    ("causal-lm", "bitfit"): "has no bias parameters in its backbone",
    **{(case, frozen): "frozen trains only a new task head, and causal-lm adds none"
       for case in ("causal-lm", "causal-lm-gpt2") for frozen in ("frozen", "frozen-uncached")},
    **{("masked-lm", frozen): "frozen trains only a new task head, and masked-lm adds none"
       for frozen in ("frozen", "frozen-uncached")},
}
REFUSED.update({
    (case, "contrastive"): "contrastive trains sentence embeddings"
    for case in TASK_CASES if case not in ("classification-mean-pooling", "multi-label-mean-pooling")
})
# tasks whose runs are models to build on rather than predictors
NOT_PREDICTORS = {"masked-lm": "a masked-lm run is an adapted model, not a predictor"}


def task_config(task_case: str) -> dict:
    return TASK_CASES[task_case].settings


def arch_of(task_case: str) -> Arch:
    return ARCHS[TASK_CASES[task_case].backbone]


def test_every_registered_strategy_is_in_the_matrix():
    assert {case["name"] for case, _ in STRATEGY_CASES.values()} == set(STRATEGIES.names())


def test_every_registered_task_is_in_the_matrix():
    assert {case.settings["type"] for case in TASK_CASES.values()} == set(TASKS.names())


def test_every_backbone_architecture_is_in_the_matrix():
    assert {case.backbone for case in TASK_CASES.values()} == set(ARCHS)


def write_rows(case: TaskCase, path: Path, n: int, seed: int) -> Path:
    rows = case.rows(n, seed)
    if case.suffix == ".txt":
        path.with_suffix(".txt").write_text("\n\n".join(r["text"] for r in rows), encoding="utf-8")
        return path.with_suffix(".txt")
    return write_jsonl(path.with_suffix(case.suffix), rows)


def data_files(task_case: str, tmp_path) -> dict:
    case = TASK_CASES[task_case]
    return {"train": write_rows(case, tmp_path / "train", 16, seed=1),
            "dev": write_rows(case, tmp_path / "dev", 8, seed=2)}


def built_task(task_case: str, tmp_path):
    """The task with its labels learned from its own training rows, read as a user's file would be."""
    task = build_task(task_settings(**task_config(task_case)), DataConfig(train="x", **TASK_CASES[task_case].data))
    records, problems = task.read_records(data_files(task_case, tmp_path)["train"])
    assert problems == [] and task.fit_labels(records, {}) == []
    return task


@pytest.mark.parametrize("task_case", TASK_CASES)
@pytest.mark.parametrize("strategy_case", STRATEGY_CASES)
def test_strategy_freezes_exactly_what_it_says(request, task_case, strategy_case, tmp_path):
    arch = arch_of(task_case)
    model_dir = request.getfixturevalue(arch.fixture)
    task = built_task(task_case, tmp_path)
    settings, should_train = STRATEGY_CASES[strategy_case]
    strategy = build_strategy(strategy_settings(**settings))
    model = task.build_model(model_dir, load_tokenizer(model_dir))
    if (task_case, strategy_case) in REFUSED:
        with pytest.raises(ConfigError, match=REFUSED[task_case, strategy_case]):
            strategy.apply(model, task)
        return
    model = strategy.apply(model, task)
    named = dict(model.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert trainable == {n for n in named if should_train(n, arch)}
    assert trainable, "every strategy trains something"
    count = count_parameters(model)
    assert count.trainable == sum(named[n].numel() for n in trainable)
    assert count.total == sum(p.numel() for p in named.values())


@pytest.mark.parametrize("task_case", TASK_CASES)
@pytest.mark.parametrize("strategy_case", STRATEGY_CASES)
def test_strategy_trains_with_falling_loss_and_reloads_to_identical_outputs(
    request, task_case, strategy_case, tmp_path, monkeypatch
):
    if (task_case, strategy_case) in REFUSED:
        pytest.skip(f"{strategy_case} does not apply to {task_case}; the refusal is tested above")
    model_dir = request.getfixturevalue(arch_of(task_case).deterministic_fixture)
    files = data_files(task_case, tmp_path)
    # One batch holds all the data and nothing is random (no dropout), so both steps see the same
    # examples and a small enough step must lower the loss.
    config = tiny_config(
        model_dir,
        files,
        tmp_path / "run",
        batch_size=64,
        max_steps=2,
        warmup_ratio=0.0,
        log_every=1,
        lr=1e-3,
    )
    config["task"] = task_config(task_case)
    config["data"].update(TASK_CASES[task_case].data)
    config["strategy"] = STRATEGY_CASES[strategy_case][0]
    texts = ["the film was great", "a dull and boring story", "music"]
    before_saving = {}
    original = train_module._write_run

    def record_outputs(paths, run):
        run.model.eval()
        with torch.no_grad():
            before_saving["logits"] = logits_of(run.task, run.tokenizer, run.model, task_case, texts)
        original(paths, run)

    monkeypatch.setattr(train_module, "_write_run", record_outputs)
    result = transferlm.train(config)

    losses = [
        json.loads(line)["loss"]
        for line in (result.run_dir / "log.jsonl").read_text().splitlines()
        if json.loads(line)["event"] == "train"
    ]
    assert len(losses) == 2 and losses[1] < losses[0]
    predictor = transferlm.load(result.run_dir)
    with torch.no_grad():
        reloaded = logits_of(predictor.task, predictor.tokenizer, predictor.model, task_case, texts)
    if strategy_case == "lora-merged":  # merging changes the order of floating-point operations
        torch.testing.assert_close(reloaded, before_saving["logits"], rtol=1e-5, atol=1e-5)
    else:  # the same weights; a one-output head may differ in the last bit (~1e-9) by the BLAS path it takes
        torch.testing.assert_close(reloaded, before_saving["logits"], rtol=0, atol=1e-7)
    inputs = list(TASK_CASES[task_case].predict_inputs) or texts
    if task_case in NOT_PREDICTORS:
        with pytest.raises(ConfigError, match=NOT_PREDICTORS[task_case]):
            predictor.predict(inputs)
        return
    assert len(predictor.predict(inputs)) == len(inputs)


def logits_of(task, tokenizer, model, task_case: str, texts: list[str]) -> torch.Tensor:
    """The model's logits on the case's inputs: the texts as one batch, or, for a pair task, its pairs as the task
    batches them."""
    if not TASK_CASES[task_case].data:
        return task.logits(model(**tokenizer(texts, padding=True, return_tensors="pt")))
    records = [task.input_record(x, i) for i, x in enumerate(TASK_CASES[task_case].predict_inputs)]
    features = task.encode(tokenizer, records, 32, with_labels=False)
    return task.logits(model(**task.model_inputs(task.collate(features.items, tokenizer.pad_token_id))))


def test_cached_frozen_equals_uncached_frozen(tiny_model_dir, sentiment_files, tmp_path):
    results = {}
    for cached in (True, False):
        config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / f"run-{cached}", epochs=3)
        config["task"] = {"pooling": "mean"}
        config["strategy"] = {"name": "frozen", "cache_features": cached}
        run = transferlm.train(config).run_dir
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["training"].get("cached_features", False) is cached
        predictor = transferlm.load(run)
        results[cached] = (metrics["validation"], predictor.model.classifier.weight.detach().clone())
    assert results[True][0]["accuracy"] == results[False][0]["accuracy"]
    torch.testing.assert_close(results[True][1], results[False][1], rtol=1e-4, atol=1e-5)


def test_cached_frozen_cls_head_equals_uncached(tiny_model_dir, sentiment_files, tmp_path):
    heads = {}
    for cached in (True, False):
        config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / f"run-{cached}", epochs=2)
        config["strategy"] = {"name": "frozen", "cache_features": cached}
        model = transferlm.load(transferlm.train(config).run_dir).model
        heads[cached] = torch.cat([model.classifier.weight.flatten(), model.bert.pooler.dense.weight.flatten()])
    torch.testing.assert_close(heads[True], heads[False], rtol=1e-4, atol=1e-5)


def test_layer_lr_decay_gives_each_depth_its_rate(tiny_model_dir, tmp_path):
    task = built_task("classification", tmp_path)
    strategy = build_strategy(strategy_settings(name="full", layer_lr_decay=0.5))
    model = strategy.apply(task.build_model(tiny_model_dir, load_tokenizer(tiny_model_dir)), task)
    from transferlm.config.schema import TrainConfig

    groups = strategy.param_groups(model, TrainConfig(lr=1.0))
    rate_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert rate_of[id(named["classifier.weight"])] == 1.0
    assert rate_of[id(named["bert.encoder.layer.1.output.dense.weight"])] == 0.5
    assert rate_of[id(named["bert.encoder.layer.0.output.dense.weight"])] == 0.25
    assert rate_of[id(named["bert.embeddings.word_embeddings.weight"])] == 0.125
    assert groups[0]["lr"] == 1.0  # the head's group first: the logged lr is the head's


def test_gradual_unfreezing_opens_one_group_per_epoch(tiny_model_dir, sentiment_files, tmp_path, monkeypatch):
    from transferlm.training.loop import TrainingLoop

    seen = {}
    original = TrainingLoop._step

    def record(self, *args, **kwargs):
        named = dict(self.unwrapped.named_parameters())
        seen[self.state.epoch] = {n for n, p in named.items() if p.requires_grad}
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TrainingLoop, "_step", record)
    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", epochs=4)
    config["strategy"] = {"name": "full", "gradual_unfreeze": True}
    transferlm.train(config)
    assert all(_in_head(n) for n in seen[0]) and seen[0]
    assert {LAYER.search(n).group(1) for n in seen[1] - seen[0]} == {"1"}
    assert {LAYER.search(n).group(1) for n in seen[2] - seen[1]} == {"0"}
    assert all("embeddings" in n for n in seen[3] - seen[2]) and seen[3] - seen[2]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"name": "last-n", "layers": 5}, "this model has 2 transformer layers"),
        ({"name": "last-n"}, "strategy.layers: required by strategy last-n"),
        (
            {"name": "lora", "target_modules": ["q_proj"]},
            "q_proj match no linear layer of the backbone; choose from: dense, key, query, value",
        ),
        ({"name": "full", "layers": 2}, "strategy.layers: not a setting of strategy full (it is a setting of "
                                        "strategy last-n"),
        ({"name": "frozen", "gradual_unfreeze": True}, "strategy.gradual_unfreeze: not a setting of strategy frozen"),
        ({"name": "contrastive", "gradual_unfreeze": True},
         "strategy.gradual_unfreeze: not a setting of strategy contrastive"),
    ],
)
def test_impossible_strategy_options_name_what_is_valid(tiny_model_dir, sentiment_files, tmp_path, settings, message):
    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run")
    config["strategy"] = settings
    with pytest.raises(ConfigError) as error:
        transferlm.train(config)
    assert any(message in p for p in error.value.problems), error.value.problems
    assert not (tmp_path / "run" / "run.json").exists()


def test_lora_default_targets_are_written_into_the_saved_config(tiny_model_dir, sentiment_files, tmp_path):
    import yaml

    config = tiny_config(tiny_model_dir, sentiment_files, tmp_path / "run", max_steps=1)
    config["strategy"] = {"name": "lora"}
    run = transferlm.train(config).run_dir
    saved = yaml.safe_load((run / "transferlm.yaml").read_text())
    assert saved["strategy"]["target_modules"] == ["query", "value"]
    assert (run / "adapter_model.safetensors").is_file() and not (run / "model.safetensors").exists()
