"""Tasks with one head on a sentence representation (classification, regression).

``task.pooling: cls`` is the model's own Hugging Face sequence-classification head; ``mean`` a linear head on the
mean of the token states (``MeanPoolingClassifier``). Building, saving, loading, the head's parameters and the split
for cached features are the same whatever the head predicts; a task says only how many outputs it has and what
goes into the head's config.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from transferlm.data.records import Record
from transferlm.tasks.base import Features, Task
from transferlm.tasks.heads import FeatureHead
from transferlm.tasks.pooling import MeanPoolingClassifier


class SentenceHeadTask(Task):
    auto_model = "AutoModelForSequenceClassification"

    @abstractmethod
    def num_outputs(self) -> int:
        """Outputs of the head (classes; 1 for a regression)."""

    @abstractmethod
    def target(self, record: Record) -> Any:
        """One record's target as an item carries it (a class index, a multi-hot row, a number)."""

    def encode(self, tokenizer, records: Sequence[Record], max_length: int, with_labels: bool = True) -> Features:
        """One item per record: the text, or the text pair as one input (truncated to ``max_length``)."""
        texts = [r.text for r in records]
        pairs = [r.text_pair for r in records] if self.data_config.text_pair_column else None
        enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
        keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
        items = [{k: enc[k][i] for k in keys} for i in range(len(records))]
        if with_labels:
            for item, record in zip(items, records, strict=True):
                item["labels"] = self.target(record)
        return Features(items, [len(ids) for ids in enc["input_ids"]])

    def _mean_pooling(self) -> bool:
        return self.task_config.pooling == "mean"  # auto is resolved before the task is built; unresolved: cls

    def build_model(self, path: Path, tokenizer: Any, pretrained: bool = True) -> nn.Module:
        if self._mean_pooling():
            return MeanPoolingClassifier.from_backbone(path, self.num_outputs(), pretrained)
        return super().build_model(path, tokenizer, pretrained)

    def load_model(self, path: Path) -> nn.Module:
        return MeanPoolingClassifier.load(path) if self._mean_pooling() else super().load_model(path)

    def save_model(self, model: nn.Module, path: Path) -> None:
        if isinstance(model, MeanPoolingClassifier):
            model.save(path)
        else:
            model.save_pretrained(path)

    def head_parameter_names(self, model: nn.Module) -> set[str]:
        # The head is everything outside the backbone, plus BERT's pooler: it only exists to feed a head.
        prefix = f"{model.base_model_prefix}."
        return {n for n, _ in model.named_parameters() if not n.startswith(prefix) or ".pooler." in n}

    def feature_head(self, model: nn.Module) -> FeatureHead | None:
        if isinstance(model, MeanPoolingClassifier):
            return FeatureHead(model, model.pooled, model.classify)
        from transformers import BertForSequenceClassification

        if isinstance(model, BertForSequenceClassification):
            # BERT's head: pooler (dense + tanh on the first token) -> dropout -> classifier.
            def first_token(**inputs):
                return model.bert(**inputs).last_hidden_state[:, 0]

            def head(features):
                pooled = model.bert.pooler(features.unsqueeze(1))
                return SequenceClassifierOutput(logits=model.classifier(model.dropout(pooled)))

            return FeatureHead(model, first_token, head)
        return None
