"""A finished run, loaded for prediction and evaluation: ``transferlm.load(path)``."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from transferlm.config.load import saved_sections
from transferlm.config.schema import DataConfig
from transferlm.data.readers import lone_surrogate
from transferlm.data.records import Record
from transferlm.errors import ConfigError, DataError
from transferlm.inference.batches import map_batches, on_inputs, run_inference, torch_forward
from transferlm.inference.explain import Explainer, ExplainSettings
from transferlm.inference.generation import GenerationSettings, Generator
from transferlm.inference.onnx_runtime import MODEL_FILE, OnnxForward
from transferlm.models.load import load_tokenizer
from transferlm.models.resolve import resolve_model
from transferlm.runs import layout
from transferlm.strategies import build_strategy
from transferlm.tasks import build_task
from transferlm.tasks.base import Features
from transferlm.tasks.long_inputs import LongInputSettings, cut_summary, describe_cuts

log = logging.getLogger(__name__)

PREDICT_BATCH = 64  # examples per forward pass in predict and evaluate, unless the caller says otherwise


class Predictor:
    def __repr__(self) -> str:
        labels = getattr(self.task, "labels", None)
        shown = f", labels {list(labels)[:10]}{' ...' if len(labels) > 10 else ''}" if labels else ""
        return (f"Predictor({self.task.name}, strategy {self.manifest.get('strategy')}, model "
                f"{self.manifest.get('model')}, backend {self.backend}{shown}, run {self.root})")

    def __init__(self, root: Path, batch_size: int = PREDICT_BATCH, onnx_spin: bool = True):
        """``onnx_spin``: whether an export's ONNX Runtime threads spin-wait between runs (``OnnxForward``)."""
        self.root = Path(root)
        self.manifest = layout.read_manifest(self.root)
        saved = yaml.safe_load((self.root / layout.CONFIG).read_text()) or {}
        self.saved_config = saved
        # Saved artifacts load leniently: keys of another version are dropped with a warning.
        self.data_config: DataConfig
        self.data_config, task_config, strategy_config = saved_sections(saved, str(root))
        self.max_length = int(saved.get("model", {}).get("max_length", 512))
        self.task = build_task(task_config, self.data_config)
        self.task.load_state(json.loads((self.root / layout.TASK_STATE).read_text()))
        self.tokenizer = load_tokenizer(self.root)
        strategy = build_strategy(strategy_config)
        model_name = saved.get("model", {}).get("name", self.manifest.get("model"))

        def base():  # only strategies that saved a delta (a LoRA adapter) need the pretrained model again
            return resolve_model(model_name).path, self.tokenizer

        self.backend = self.manifest.get("backend", "torch")
        if self.backend == "onnx":  # an export directory (`transferlm export`): the same task code around ORT
            self.model = None
            self.onnx: OnnxForward | None = OnnxForward(self.root / MODEL_FILE, spin=onnx_spin)
            self.forward = on_inputs(self.onnx, self.task)
        else:
            self.model, self.onnx = strategy.load(self.task, self.root, base).eval(), None
            self.forward = torch_forward(self.model, self.task)
        self.batch_size = batch_size

    def predict(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        """Predictions for raw inputs: strings, ``(text, text_pair)`` tuples for pair models, or (NER) token
        lists for pre-tokenised text."""
        return self.predict_records(self.records(inputs))

    def records(self, inputs: Sequence[Any]) -> list[Record]:
        """Raw inputs (as ``predict`` takes them) as the task's records; malformed inputs raise one ``DataError``
        naming each."""
        records, problems = [], []
        for i, item in enumerate(inputs, start=1):
            try:
                if problem := lone_surrogate(item):
                    raise DataError(f"input {i}: {problem}")
                records.append(self.task.input_record(item, i))
            except DataError as e:
                problems += e.problems
        if problems:
            raise DataError(problems)
        return records

    def predict_records(self, records: Sequence[Record]) -> list[dict[str, Any]]:
        if self.task.generates:  # language models predict by generating (default settings: greedy)
            return self.generate(records)
        features = self.features(records, with_labels=False)
        predictions = self.task.predictions(self.outputs(features), features, records)
        for n, cut in features.cuts.items():  # never silent: each input that lost tokens says how many, and where
            predictions[n]["truncated"] = cut.as_dict()
        return predictions

    def generate(self, prompts: Sequence[Any], settings=None, chat: bool = False, on_text=None) -> list[dict[str, Any]]:
        """Continuations of prompts (strings, chats as lists of turns, or records) by a causal-lm run; see
        ``transferlm.inference.generation.Generator.generate``."""
        if not self.task.generates:
            raise ConfigError(f"{self.root}: a {self.task.name} model does not generate text; use predict")
        if self.model is None:
            raise ConfigError(f"{self.root}: an ONNX export cannot generate; use the run directory it came from")
        return Generator(self.model, self.tokenizer).generate(prompts, settings or GenerationSettings(), chat, on_text)

    def explain(self, inputs: Sequence[Any], settings: ExplainSettings | None = None) -> list[dict[str, Any]]:
        """Word attributions for raw inputs (as ``predict`` takes them); see ``transferlm.inference.explain``."""
        return self.explain_records(self.records(inputs), settings)

    def explain_records(self, records: Sequence[Record], settings: ExplainSettings | None = None
                        ) -> list[dict[str, Any]]:
        if self.model is None:
            raise ConfigError(f"{self.root}: an ONNX export has no gradients to explain with; use the run directory "
                              "it came from")
        explainer = Explainer(self.model, self.task, self.tokenizer, self.max_length, settings or ExplainSettings())
        return [explainer.explain(record) for record in records]

    def read(self, path: Path, need_label: bool = True) -> list[Record]:
        records, problems = self.task.read_records(Path(path), need_label)
        if problems:
            raise DataError(problems)
        return records

    def evaluate(self, path: Path, per_example: bool = False) -> dict[str, Any]:
        """The task's metrics on a labelled file; ``per_example`` adds each example's score (e.g. 1/0 for
        correct/wrong) under "per_example" where the task defines one, for paired comparisons."""
        return self.evaluate_records(self.read(path), per_example, source=str(path))

    def evaluate_records(self, records: Sequence[Record], per_example: bool = False,
                         source: str = "input") -> dict[str, Any]:
        """``evaluate`` on records already read (e.g. a validation split carved from the training file);
        ``source`` names them in messages."""
        problems = self.task.check_labels({source: records})
        if problems:
            raise DataError(problems)
        features = self.features(records, with_labels=True)
        for problem in features.problems:  # scored anyway, e.g. an answer no window holds scores partly
            log.warning(problem.replace("input:", f"{source}:", 1))
        outputs = self.outputs(features)
        metrics = self.task.metrics(outputs, features)
        if isinstance(self.task.task_config, LongInputSettings):
            metrics["truncation"] = cut_summary(dict(features.cuts), len(records))
            if features.cuts:
                log.warning(describe_cuts(metrics["truncation"], source, self.max_length,
                                          self.task.task_config.long_inputs))
        if per_example:
            metrics["per_example"] = self.task.example_scores(outputs, features)
        return metrics

    def features(self, records: Sequence[Record], with_labels: bool) -> Features:
        """The records encoded as the model's items (``with_labels``: with the targets that ``metrics`` reads)."""
        return self.task.encode(self.tokenizer, records, self.max_length, with_labels=with_labels)

    def outputs(self, features: Features) -> list[torch.Tensor]:
        """The task's output row for every item of ``features``, in their order, from this run's backend."""
        if self.model is None:
            return map_batches(self.forward, self.task, features, self.tokenizer.pad_token_id, self.batch_size)
        return run_inference(self.model, self.task, features, self.tokenizer.pad_token_id, self.batch_size)


def load(path: str | Path, batch_size: int = PREDICT_BATCH, onnx_spin: bool = True) -> Predictor:
    """Load a finished run directory for prediction and evaluation."""
    return Predictor(Path(path), batch_size, onnx_spin)
