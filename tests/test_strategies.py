"""Contract tests over the strategy registry: every strategy x task trains, freezes what it says,
saves and reloads to identical outputs. Adding a strategy or task means adding one line below."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
import torch

import transferlm
from conftest import POSITIVE, ner_rows, qa_rows, sentiment_rows, tiny_config, write_jsonl
from transferlm.config import DataConfig, strategy_settings, task_settings
from transferlm.data.records import Record
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
# task case -> task config (and multi-label data); "backbone" picks the tiny model (default bert)
TASK_CASES = {
    "classification": {"type": "classification"},
    "classification-mean-pooling": {"type": "classification", "pooling": "mean"},
    "multi-label": {"type": "classification", "multi_label": True},
    "multi-label-mean-pooling": {"type": "classification", "multi_label": True, "pooling": "mean"},
    "ner": {"type": "ner"},
    "qa": {"type": "qa"},
    "classification-llama": {"type": "classification", "backbone": "llama"},
    "classification-gpt2": {"type": "classification", "backbone": "gpt2"},
    "causal-lm": {"type": "causal-lm", "backbone": "llama"},  # chat data
    "causal-lm-gpt2": {"type": "causal-lm", "backbone": "gpt2"},  # plain text, packed
    "masked-lm": {"type": "masked-lm"},  # plain text; the tiny BERT has no masked-LM head: a new one
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
    return {k: v for k, v in TASK_CASES[task_case].items() if k != "backbone"}


def arch_of(task_case: str) -> Arch:
    return ARCHS[TASK_CASES[task_case].get("backbone", "bert")]


# what `predict` takes per task (the default: text strings)
PREDICT_INPUTS = {"qa": [("which price", "the bank was great"), {"question": "a b", "context": "stock market"}]}


def test_every_registered_strategy_is_in_the_matrix():
    assert {case["name"] for case, _ in STRATEGY_CASES.values()} == set(STRATEGIES.names())


def test_every_registered_task_is_in_the_matrix():
    assert {case["type"] for case in TASK_CASES.values()} == set(TASKS.names())


def test_every_backbone_architecture_is_in_the_matrix():
    assert {case.get("backbone", "bert") for case in TASK_CASES.values()} == set(ARCHS)


def multilabel_rows(n: int) -> list[dict]:
    rows = sentiment_rows(n, seed=5)
    # a second label marks texts containing a strongly positive word, so examples carry 1 or 2 labels
    return [
        {"text": r["text"], "label": [r["label"]] + (["strong"] if any(w in r["text"] for w in POSITIVE[:3]) else [])}
        for r in rows
    ]


def lm_chat_rows(n: int) -> list[dict]:
    rows = sentiment_rows(n, seed=1)
    return [{"messages": [{"role": "user", "content": r["text"]}, {"role": "assistant", "content": r["label"]}]}
            for r in rows]


def data_files(task_case: str, tmp_path) -> dict:
    if task_case == "causal-lm":
        rows = lm_chat_rows(24)
        return {"train": write_jsonl(tmp_path / "train.jsonl", rows[:16]),
                "dev": write_jsonl(tmp_path / "dev.jsonl", rows[16:])}
    if task_case in ("causal-lm-gpt2", "masked-lm"):
        for name, seed in (("train", 1), ("dev", 2)):
            text = "\n\n".join(r["text"] for r in sentiment_rows(24, seed=seed))
            (tmp_path / f"{name}.txt").write_text(text, encoding="utf-8")
        return {"train": tmp_path / "train.txt", "dev": tmp_path / "dev.txt"}
    if task_case == "qa":
        return {"train": write_jsonl(tmp_path / "train.jsonl", qa_rows(16, seed=1)),
                "dev": write_jsonl(tmp_path / "dev.jsonl", qa_rows(8, seed=2))}
    if task_case == "ner":
        rows = ner_rows(16, seed=1)
        return {"train": write_jsonl(tmp_path / "train.jsonl", rows), "dev": write_jsonl(tmp_path / "dev.jsonl",
                                                                                         ner_rows(8, seed=2))}
    if task_case.startswith("multi-label"):
        rows = multilabel_rows(24)
        return {
            "train": write_jsonl(tmp_path / "train.jsonl", rows[:12] + rows[12:16]),
            "dev": write_jsonl(tmp_path / "dev.jsonl", multilabel_rows(8)),
        }
    # 3:1 imbalance: a fresh head (uniform outputs) has an unambiguous first step to take
    rows = sentiment_rows(24, seed=1)
    return {
        "train": write_jsonl(tmp_path / "train.jsonl", rows[:12] + rows[12:16]),
        "dev": write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(8, seed=2)),
    }


def task_records(task_case: str) -> list[Record]:
    if task_case.startswith("causal-lm"):
        from transferlm.data.lm import Turn

        return [Record("", None, (Turn("user", r["text"]), Turn("assistant", "pos")), i)
                for i, r in enumerate(sentiment_rows(8, seed=1))]
    if task_case == "masked-lm":
        return [Record(r["text"], None, None, i) for i, r in enumerate(sentiment_rows(8, seed=1))]
    if task_case == "qa":
        from transferlm.data.squad import Answer

        return [Record(r["question"], r["context"], tuple(Answer(a["text"], a["answer_start"]) for a in r["answers"]),
                       i, id=r["id"]) for i, r in enumerate(qa_rows(8, seed=1))]
    if task_case == "ner":
        return [Record(" ".join(r["tokens"]), None, tuple(r["tags"]), i, tuple(r["tokens"]))
                for i, r in enumerate(ner_rows(8, seed=1))]
    rows = multilabel_rows(8) if task_case.startswith("multi-label") else sentiment_rows(8, seed=1)
    return [Record(r["text"], None, r["label"], i) for i, r in enumerate(rows)]


def built_task(task_case: str, records):
    task = build_task(task_settings(**task_config(task_case)), DataConfig(train="x"))
    assert task.fit_labels(records, {}) == []
    return task


@pytest.mark.parametrize("task_case", TASK_CASES)
@pytest.mark.parametrize("strategy_case", STRATEGY_CASES)
def test_strategy_freezes_exactly_what_it_says(request, task_case, strategy_case, tmp_path):
    arch = arch_of(task_case)
    model_dir = request.getfixturevalue(arch.fixture)
    task = built_task(task_case, task_records(task_case))
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
    config["strategy"] = STRATEGY_CASES[strategy_case][0]
    texts = ["the film was great", "a dull and boring story", "music"]
    before_saving = {}
    original = train_module._write_run

    def record_outputs(paths, run):
        run.model.eval()
        tokenizer = run.tokenizer
        with torch.no_grad():
            before_saving["logits"] = run.task.logits(run.model(**tokenizer(texts, padding=True, return_tensors="pt")))
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
        inputs = predictor.tokenizer(texts, padding=True, return_tensors="pt")
        reloaded = predictor.task.logits(predictor.model(**inputs))
    if strategy_case == "lora-merged":  # merging changes the order of floating-point operations
        torch.testing.assert_close(reloaded, before_saving["logits"], rtol=1e-5, atol=1e-5)
    else:
        assert torch.equal(reloaded, before_saving["logits"])
    inputs = PREDICT_INPUTS.get(task_case, texts)
    if task_case in NOT_PREDICTORS:
        with pytest.raises(ConfigError, match=NOT_PREDICTORS[task_case]):
            predictor.predict(inputs)
        return
    assert len(predictor.predict(inputs)) == len(inputs)


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


def test_layer_lr_decay_gives_each_depth_its_rate(tiny_model_dir):
    task = built_task(
        "classification", [Record(r["text"], None, r["label"], i) for i, r in enumerate(sentiment_rows(8, seed=1))]
    )
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
