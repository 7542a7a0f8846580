"""The task contract: what the one training loop, evaluation, saving and prediction need from a task."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from transferlm.config.schema import DataConfig
from transferlm.config.selected import TASK_SETTINGS, TaskSettings
from transferlm.data.records import Record, read_records
from transferlm.errors import ConfigError, DataError
from transferlm.registry import Registry
from transferlm.tasks.explanation import ExplanationInputs, ExplanationTarget
from transferlm.tasks.heads import FeatureHead
from transferlm.tasks.long_inputs import Cut

# Padded tokens per inference forward pass at most (batch x longest): 32 windows of 512 tokens. A batch of 64 such
# windows holds 0.8 GB of attention scores per layer in MiniLM; short inputs still go 64 at a time.
INFERENCE_BATCH_TOKENS = 16_384


@dataclass(frozen=True)
class ProbeTargets:
    """One item's targets for a probe on fixed features (``Task.probe_targets``): ``level`` sequence (one target, on
    the pooled input) or token (a target at each of ``positions``); ``regression``: real values, else classes."""

    level: Literal["sequence", "token"]
    values: list[Any]
    positions: list[int] | None
    regression: bool


@dataclass(frozen=True)
class Features:
    """Tokenised examples ready for batching; ``lengths`` drives length-grouped sampling."""

    items: list[dict[str, Any]]
    lengths: list[int]
    # Problems found while encoding labelled data that the caller weighs: fatal for training data, a
    # warning for data that is only scored (e.g. an answer no window can hold: it can only score partly).
    problems: tuple[str, ...] = ()
    # What encoding cut from an input longer than the model's window, by the input's index (nothing: not there).
    cuts: Mapping[int, Cut] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)


def pad_sequences(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """Integer rows of different lengths as one right-padded long tensor."""
    out = torch.full((len(rows), max(len(r) for r in rows)), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def pad_inputs(items: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` (and ``token_type_ids`` where the items have them)."""
    width = max(len(item["input_ids"]) for item in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    types = torch.zeros((len(items), width), dtype=torch.long) if "token_type_ids" in items[0] else None
    for row, item in enumerate(items):
        n = len(item["input_ids"])
        ids[row, :n] = torch.tensor(item["input_ids"])
        mask[row, :n] = 1
        if types is not None:
            types[row, : len(item["token_type_ids"])] = torch.tensor(item["token_type_ids"])
    batch = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        batch["token_type_ids"] = types
    return batch


IGNORE = -100  # the target of positions outside the loss (padding, special tokens, unlabelled subwords)


def hf_model(auto_class: str, path: Path, tokenizer: Any, pretrained: bool, config: dict[str, Any]) -> nn.Module:
    """A Hugging Face model of ``auto_class`` (e.g. "AutoModelForTokenClassification") with ``config`` set on it:
    pretrained from ``path``, or the same architecture with random weights; its pad id made the tokenizer's."""
    import transformers

    auto = getattr(transformers, auto_class)
    if pretrained:
        model = auto.from_pretrained(path, **config)
    else:
        model = auto.from_config(transformers.AutoConfig.from_pretrained(path, **config))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


@dataclass(frozen=True)
class LossTerms:
    """Un-normalised loss and the number of units it sums over, so accumulation can normalise exactly."""

    total: torch.Tensor
    count: float  # fractional where items are weighted (the windows of a long input share one unit)


class Task(ABC):
    name: str
    settings: ClassVar[type[TaskSettings]]  # the task's own settings class: the keys of the run's ``task:`` section
    default_metric: str
    # Every metric that may select checkpoints (train.metric) or be tuned, and whether higher is better.
    metric_directions: ClassVar[Mapping[str, bool]]
    baselines: tuple[str, ...] = ()  # the no-transfer baselines of `compare` that apply (besides scratch)
    has_new_head: bool = True  # False: the model's own pretrained head is trained (language modelling)
    continues_checkpoint: ClassVar[bool] = False  # True: trains the checkpoint's own objective; keeps its pooling
    unit_name: ClassVar[str] = "examples"  # what the training set is counted in, in the run's log
    inference_batch_tokens: ClassVar[int] = INFERENCE_BATCH_TOKENS  # padded tokens per inference pass, at most
    auto_model: ClassVar[str] = ""  # the transformers AutoModelFor... class that builds the task's model
    target_keys: ClassVar[tuple[str, ...]] = ("labels",)  # what collate_targets adds to a batch
    label_dtype: ClassVar[torch.dtype] = torch.long  # of one scalar target per item (default collate_targets)
    generates: bool = False  # True: predictions are generated text (``Predictor.generate``), not read off outputs
    pipeline_tag: ClassVar[str] = ""  # the Hugging Face pipeline / model-card task this task's models serve

    def __init__(self, task: TaskSettings, data: DataConfig):
        if not isinstance(task, self.settings):
            raise ConfigError(f"task: task {self.name} takes {self.settings.__name__}, got {type(task).__name__}; "
                              f"build it with task_settings({self.name!r}, ...)")
        self.task_config = task
        self.data_config = data

    # --- labels / state saved with the run ---
    @abstractmethod
    def fit_labels(
        self, train: Sequence[Record], others: dict[str, Sequence[Record]], train_name: str = "train"
    ) -> list[str]:
        """Learn the label space from train; return problems found in all splits (never raise).

        ``others`` maps a display name (the file) to that split's records."""

    @abstractmethod
    def check_labels(self, splits: dict[str, Sequence[Record]]) -> list[str]:
        """Problems with labels of further splits (e.g. an evaluation file), given the learned label space."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """JSON-serialisable state (e.g. the label map) needed to rebuild the task from a run directory."""

    @abstractmethod
    def load_state(self, state: dict[str, Any]) -> None: ...

    def split_key(self, record: Record) -> Any:
        """Key for stratified validation carve-outs."""
        return None

    def split_group(self, record: Record) -> Any:
        """Records with the same group stay on one side of a validation carve-out (e.g. questions about one
        context, which would otherwise leak answers into validation); None: split record by record."""
        return None

    # --- model ---
    def head_config(self) -> dict[str, Any]:
        """Config values of the task's head for ``build_model`` (number of outputs, label names)."""
        return {}

    def build_model(self, path: Path, tokenizer: Any, pretrained: bool = True) -> nn.Module:
        """Backbone from ``path`` plus a new task head; ``pretrained=False``: same architecture, random weights."""
        return hf_model(self.auto_model, path, tokenizer, pretrained, self.head_config())

    def load_model(self, path: Path) -> nn.Module:
        """A fine-tuned model saved by this task."""
        import transformers

        return getattr(transformers, self.auto_model).from_pretrained(path)

    def save_model(self, model: nn.Module, path: Path) -> None:
        """Write the fine-tuned model so that ``load_model(path)`` restores it."""
        model.save_pretrained(path)

    def head_parameter_names(self, model: nn.Module) -> set[str]:
        """Parameters that belong to the task head rather than the pretrained backbone: by default, everything
        outside the backbone."""
        prefix = f"{model.base_model_prefix}."
        return {n for n, _ in model.named_parameters() if not n.startswith(prefix)}

    def feature_head(self, model: nn.Module) -> FeatureHead | None:
        """The head over fixed backbone features, if this task knows how to split ``model``; else None."""
        return None

    # --- data ---
    def read_records(self, path: Path, need_label: bool = True) -> tuple[list[Record], list[str]]:
        """Records of one file and the problems found in it (returned, not raised, so every file's problems
        are reported together)."""
        return read_records(path, self.data_config, need_label)

    def input_record(self, item: Any, index: int) -> Record:
        """A record for one raw prediction input: a string, or a ``(text, text_pair)`` tuple for pair models."""
        pair_model = self.data_config.text_pair_column is not None
        if isinstance(item, (tuple, list)):
            if not pair_model or len(item) != 2:
                raise DataError(f"input {index}: got a {len(item)}-item sequence; this model takes "
                                f"{'(text, text_pair) pairs' if pair_model else 'single strings'}")
            return Record(str(item[0]), str(item[1]), None, index)
        if pair_model:
            raise DataError(f"input {index}: this model was trained on text pairs; pass (text, text_pair) tuples")
        if not isinstance(item, str):
            raise DataError(f"input {index}: expected a string, got {type(item).__name__}")
        return Record(item, None, None, index)

    def input_schema(self) -> dict[str, Any]:
        """The JSON Schema of one raw prediction input, as ``input_record`` takes it (the server documents it)."""
        if self.data_config.text_pair_column is not None:
            return {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2,
                    "description": "A (text, text_pair) pair."}
        return {"type": "string"}

    def record_row(self, record: Record, with_label: bool = True) -> dict[str, Any]:
        """A record as one JSONL row that ``read_records`` reads back under ``read_back_keys()`` (experiments
        write their splits this way; ``predict`` echoes inputs with it)."""
        row: dict[str, Any] = {"text": record.text}
        if record.text_pair is not None:
            row["text_pair"] = record.text_pair
        if with_label:
            row["label"] = record.label
        return row

    def read_back_keys(self) -> dict[str, Any]:
        """The settings (dotted keys of the run config) under which ``record_row`` rows read back."""
        return {"data.text_column": "text",
                "data.text_pair_column": "text_pair" if self.data_config.text_pair_column else None,
                "data.label_column": "label"}

    # --- features, loss, outputs ---
    @abstractmethod
    def encode(
        self, tokenizer: Any, records: Sequence[Record], max_length: int, with_labels: bool = True
    ) -> Features:
        """Model-ready items. A task may split one record into several items (windows of a long input); each
        item then carries ``"example"``, the index of its record, and the task merges them back."""

    def input_lengths(self, tokenizer: Any, records: Sequence[Record]) -> list[int] | None:
        """Each record's length in tokens as one model input (special tokens included), for ``model.max_length:
        auto``; None for tasks that read long inputs in windows of their own and pick no length from the data."""
        return None

    def collate(self, items: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        """A padded batch of the items' inputs, with their targets when they carry them."""
        batch = pad_inputs(items, pad_id)
        if "labels" in items[0]:
            batch.update(self.collate_targets(items))
        return batch

    def training_collate(self, items: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        """A training batch: ``collate`` unless the task draws something afresh each time (masked-lm's masks);
        evaluation always uses ``collate``, which must be deterministic."""
        return self.collate(items, pad_id)

    def collate_targets(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Only the targets of a batch (training on cached features needs no inputs): by default one target per
        item (``label_dtype``), or a sequence per item padded with ``IGNORE``."""
        labels = [item["labels"] for item in items]
        if isinstance(labels[0], (list, tuple)):
            return {"labels": pad_sequences(labels, IGNORE)}
        return {"labels": torch.tensor(labels, dtype=self.label_dtype)}

    def loss_units(self, items: Sequence[dict[str, Any]]) -> float:
        """What ``loss`` sums over in these items (examples; labelled tokens for tagging): the loop divides
        by the total over an optimizer step, so accumulation and DDP normalise exactly."""
        return len(items)

    @abstractmethod
    def loss(self, outputs: Any, batch: dict[str, torch.Tensor]) -> LossTerms: ...

    def model_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What the model is called with: the batch without its targets."""
        return {k: v for k, v in batch.items() if k not in self.target_keys}

    def forward(self, module: nn.Module, batch: dict[str, torch.Tensor]) -> Any:
        """The model's outputs on a batch (targets included: a task may skip outputs that no target reads)."""
        return module(**self.model_inputs(batch))

    def logits(self, outputs: Any) -> torch.Tensor:
        """The tensor inference keeps from the model's outputs."""
        return outputs.logits

    def output_rows(self, output: torch.Tensor, items: Sequence[dict[str, Any]]) -> list[torch.Tensor]:
        """A batch's output, one row per item, without padding (a per-token output is cut to the item's length)."""
        return list(output)

    # --- outputs -> metrics and predictions; ``outputs`` has one row per item of ``features`` ---
    @abstractmethod
    def metrics(self, outputs: Sequence[torch.Tensor], features: Features) -> dict[str, Any]:
        """Task metrics against the targets the items carry; must include ``default_metric`` and ``n``."""

    def example_scores(self, outputs: Sequence[torch.Tensor], features: Features) -> list[float] | None:
        """Per-example scores whose mean is the default metric (so two models can be compared example by
        example), or None where the metric does not decompose that way."""
        return None

    @abstractmethod
    def predictions(
        self, outputs: Sequence[torch.Tensor], features: Features, records: Sequence[Record]
    ) -> list[dict[str, Any]]:
        """Human-facing predictions, one dict per record."""

    def calibrate(self, outputs: Sequence[torch.Tensor], features: Features) -> dict[str, Any] | None:
        """Fit decision settings (kept in ``state()``) on the validation outputs of the selected model, before
        test; returns what was chosen, or None where the task has nothing to fit (the default)."""
        return None

    calibrates: bool = False  # whether ``calibrate`` does anything (saves an inference pass when not)

    def label_profile(self, records: Sequence[Record]) -> dict[str, Any] | None:
        """How the labels of ``records`` are spread, for the run's data profile and model card (None: no labels)."""
        return None

    # --- fixed-feature probes (model ranking: ``experiments/rank.py``) ---
    def probe_targets(self, item: dict[str, Any]) -> ProbeTargets:
        """What a probe on fixed features predicts for one encoded item: one target for the whole input (pooled
        features), or one per labelled position (token features). By default from the item's ``labels``: a class
        index, a real value, a multi-hot row (real-valued columns), or a sequence with ``IGNORE`` where no target
        is."""
        labels = item["labels"]
        per_token = isinstance(labels, (list, tuple)) and len(labels) == len(item["input_ids"])
        if per_token and self.label_dtype == torch.long:
            positions = [i for i, label in enumerate(labels) if label != IGNORE]
            return ProbeTargets("token", [labels[i] for i in positions], positions, regression=False)
        regression = self.label_dtype != torch.long
        return ProbeTargets("sequence", [labels], None, regression=regression)

    # --- explanations (``inference/explain.py``) ---
    def explanation_inputs(self, tokenizer: Any, record: Record, max_length: int) -> ExplanationInputs:
        """One record's model inputs with the word of every position."""
        raise ConfigError(f"explain: task {self.name} cannot be explained (classification, regression, ner and qa "
                          "can)")

    def explanation_target_names(self) -> list[str] | None:
        """The values ``explanation_targets`` takes as ``target``, when they are a closed set (None: any string)."""
        return None

    def explanation_targets(self, output: torch.Tensor, inputs: ExplanationInputs, record: Record,
                            target: str | None) -> list[ExplanationTarget]:
        """The outputs to explain, given the model's output on ``inputs.items``; ``target`` narrows them (a label,
        an entity type); None: what the model predicted."""
        raise ConfigError(f"explain: task {self.name} cannot be explained")

    def greater_is_better(self, metric: str) -> bool:
        """Whether a higher ``metric`` is better, as the task declares it; an undeclared metric is an error (a
        guess would select the worst checkpoint of a metric such as rmse)."""
        try:
            return self.metric_directions[metric]
        except KeyError:
            raise ConfigError(f"train.metric: {metric!r} is not a metric of task {self.name}; choose one of "
                              f"{', '.join(sorted(self.metric_directions))}") from None


class TextObjectiveTask(Task):
    """A task trained on the text itself (causal-lm, masked-lm): no labels to learn or save, no new head, and
    lower loss and perplexity are better."""

    default_metric = "perplexity"
    metric_directions = {"perplexity": False, "loss": False}
    has_new_head = False
    continues_checkpoint = True
    empty_split = "no examples"  # what an empty split is called in the problem report

    def fit_labels(self, train, others, train_name: str = "train") -> list[str]:
        return self.check_labels({train_name: train, **others})

    def check_labels(self, splits: dict[str, Sequence[Record]]) -> list[str]:
        return [f"{where}: {self.empty_split}" for where, records in splits.items() if not records]

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        pass

    def probe_targets(self, item: dict[str, Any]) -> ProbeTargets:
        raise ConfigError(f"task {self.name} has no labels for a probe to predict; compare models for it by "
                          "perplexity (`transferlm perplexity`) instead")


TASKS: Registry[type[Task]] = Registry("task", plugins="transferlm.tasks")


def register_task(task: type[Task]) -> type[Task]:
    """Register a task and its settings class under the task's name (one call per task module)."""
    declared = task.settings.model_fields["type"].default
    if declared != task.name:
        raise ValueError(f"{task.__name__}.settings declares type {declared!r}, not the task's name {task.name!r}")
    default = getattr(task, "default_metric", None)  # classification picks its own per run (multi-label or not)
    if isinstance(default, str) and default not in task.metric_directions:
        raise ValueError(f"{task.__name__}: default metric {task.default_metric!r} has no declared direction")
    TASKS.register(task.name, task)
    TASK_SETTINGS.register(task.name, task.settings)
    return task


def build_task(task: TaskSettings, data: DataConfig) -> Task:
    return TASKS.get(task.type)(task, data)
