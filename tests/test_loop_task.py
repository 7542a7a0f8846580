"""The loop's contract: every registered task, and every task a strategy hands the loop instead, is a LoopTask,
with the protocol's signatures, and a wrapper exposes no more of the task it wraps than the protocol."""

from __future__ import annotations

import inspect

import pytest
import torch

from transferlm.strategies.contrastive import PairTask
from transferlm.strategies.feature_cache import CachedFeatureTask
from transferlm.tasks import TASKS
from transferlm.tasks.base import Features, LossTerms
from transferlm.tasks.protocol import LoopTask

MEMBERS = sorted(name for name, value in vars(LoopTask).items() if callable(value) and not name.startswith("_"))


def parameters(function) -> list[str]:
    return [name for name in inspect.signature(function).parameters if name != "self"]


def test_the_protocol_holds_what_the_loop_calls():
    assert MEMBERS == ["collate", "forward", "greater_is_better", "logits", "loss", "loss_units", "metrics",
                       "model_inputs", "output_rows", "training_collate"]


@pytest.mark.parametrize("name", TASKS.names())
def test_every_registered_task_is_a_loop_task(name):
    task_class = TASKS.get(name)
    for member in MEMBERS:
        assert parameters(getattr(task_class, member)) == parameters(getattr(LoopTask, member)), (name, member)


class Wrapped:
    """A task as a wrapper sees it: the loop's members, answering distinctly, and more the loop never calls."""

    def __init__(self):
        self.calls: list[str] = []

    def _record(self, name: str, result):
        self.calls.append(name)
        return result

    def collate(self, items, pad_id):
        return self._record("collate", {"input_ids": torch.zeros(len(items), 1, dtype=torch.long)})

    def collate_targets(self, items):
        return self._record("collate_targets", {"labels": torch.tensor([item["labels"] for item in items])})

    def training_collate(self, items, pad_id):
        return self._record("training_collate", {})

    def model_inputs(self, batch):
        return self._record("model_inputs", {})

    def loss_units(self, items):
        return self._record("loss_units", 7 * len(items))

    def loss(self, outputs, batch):
        return self._record("loss", LossTerms(torch.tensor(3.0), 1))

    def logits(self, outputs):
        return self._record("logits", outputs["logits"])

    def output_rows(self, output, items):
        return self._record("output_rows", [output[:1]] * len(items))

    def metrics(self, outputs, features):
        return self._record("metrics", {"n": len(outputs)})

    def greater_is_better(self, metric):
        return self._record("greater_is_better", metric == "up")

    def encode(self, tokenizer, records, max_length, with_labels=True):  # not the loop's
        return self._record("encode", None)


class StubHead:
    def collate_features(self, rows):
        return torch.stack(rows)


def wrappers(task: Wrapped) -> dict[str, LoopTask]:
    return {"cached": CachedFeatureTask(task, StubHead()), "pairs": PairTask(task, Features([], []), head_c=1.0)}


@pytest.mark.parametrize("kind", ["cached", "pairs"])
def test_wrapper_tasks_are_loop_tasks_and_hide_the_rest_of_the_task(kind):
    wrapper = wrappers(Wrapped())[kind]
    assert isinstance(wrapper, LoopTask)
    for member in MEMBERS:
        assert parameters(getattr(type(wrapper), member)) == parameters(getattr(LoopTask, member)), member
    assert not hasattr(wrapper, "encode") and not hasattr(wrapper, "collate_targets")


def test_the_cached_feature_task_batches_features_and_scores_as_the_task():
    task = Wrapped()
    cached = CachedFeatureTask(task, StubHead())
    items = [{"labels": 1, "features": torch.ones(2)}, {"labels": 0, "features": torch.zeros(2)}]
    batch = cached.training_collate(items, pad_id=0)
    assert batch["labels"].tolist() == [1, 0] and batch["features"].shape == (2, 2)
    assert set(cached.model_inputs(batch)) == {"features"}
    assert cached.loss_units(items) == 14 and cached.loss({}, batch).total.item() == 3.0
    assert cached.greater_is_better("up") and not cached.greater_is_better("down")
    assert cached.metrics([torch.ones(1)], Features([], [])) == {"n": 1}
    logits = torch.arange(4.0).reshape(2, 2)
    assert cached.logits({"logits": logits}) is logits and len(cached.output_rows(logits, items)) == 2
    assert "collate" not in task.calls  # batches hold features, not the backbone's inputs


def test_the_pair_task_keeps_its_embeddings_and_judges_metrics_as_the_task():
    task = Wrapped()
    pairs = PairTask(task, Features([], []), head_c=1.0)
    embeddings = torch.arange(6.0).reshape(3, 2)
    assert pairs.logits(embeddings) is embeddings
    assert [row.tolist() for row in pairs.output_rows(embeddings, [{}] * 3)] == embeddings.tolist()
    assert pairs.greater_is_better("up") and not pairs.greater_is_better("down")
    assert task.calls == ["greater_is_better", "greater_is_better"]  # nothing else of the task is asked
