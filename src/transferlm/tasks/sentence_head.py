"""Tasks with one head on a sentence representation (classification, regression).

``task.pooling: cls`` is the model's own Hugging Face sequence-classification head; ``mean`` a linear head on the
mean of the token states (``MeanPoolingClassifier``). Building, saving, loading, the head's parameters and the split
for cached features are the same whatever the head predicts; a task says only how many outputs it has and what
goes into the head's config. So is the reading of inputs longer than the model's window (``tasks/long_inputs.py``):
a record becomes one item per window, and its output is made of its windows' outputs (``documents``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from transferlm.data.records import Record
from transferlm.tasks.base import Features, LossTerms, Task
from transferlm.tasks.explanation import ExplanationInputs, ExplanationTarget, Word
from transferlm.tasks.heads import FeatureHead
from transferlm.tasks.long_inputs import Cut, Template, plan, text_ids
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
        """One item per window of each record (``task.long_inputs``): the text, or the text pair as one input. Every
        item carries ``example`` (its record's index) and ``weight`` (one over its record's window count)."""
        template = Template.probe(tokenizer)
        first = text_ids(tokenizer, [r.text for r in records])
        # An empty second text is no pair, as transformers encodes it (so truncate matches it token for token).
        second = text_ids(tokenizer, [r.text_pair or "" for r in records]) if self._pairs() else None
        items, cuts = [], {}
        for n, record in enumerate(records):
            b = second[n] if second is not None and record.text_pair else None
            windows, cut = self.windows(template, first[n], b, max_length)
            if cut is not None:
                cuts[n] = cut
            target = self.target(record) if with_labels else None
            for item, _ in windows:
                item["example"], item["weight"] = n, 1.0 / len(windows)
                if with_labels:
                    item["labels"] = target
                items.append(item)
        return Features(items, [len(item["input_ids"]) for item in items], cuts=cuts)

    def _pairs(self) -> bool:
        return self.data_config.text_pair_column is not None

    def windows(self, template: Template, first: Sequence[int], second: Sequence[int] | None, max_length: int
                ) -> tuple[list[tuple[dict[str, list[int]], list[tuple[int, int] | None]]], Cut | None]:
        """One input's model items (``task.long_inputs``), each with the source of every position: (side, token
        index in that side's tokens) for a text token, None for a special token; and what was cut."""
        settings = self.task_config
        budget = max_length - template.added(second is not None)
        planned, cut = plan(len(first), None if second is None else len(second), budget, settings.long_inputs,
                            settings.stride)
        out = []
        for a_pieces, b_pieces in planned:
            a_index = [t for start, end in a_pieces for t in range(start, end)]
            b_index = None if second is None else [t for start, end in b_pieces for t in range(start, end)]
            item = template.build([first[t] for t in a_index], None if second is None else [second[t] for t in b_index])
            out.append((item, template.positions(a_index, b_index)))
        return out, cut

    def input_lengths(self, tokenizer: Any, records: Sequence[Record]) -> list[int]:
        template = Template.probe(tokenizer)
        first = text_ids(tokenizer, [r.text for r in records])
        if not self._pairs():
            return [len(ids) + template.added(False) for ids in first]
        second = text_ids(tokenizer, [r.text_pair or "" for r in records])
        return [len(a) + len(b) + template.added(bool(r.text_pair)) for a, b, r in zip(first, second, records,
                                                                                        strict=True)]

    # --- explanations: the windows of one input, and its outputs ---
    def explanation_inputs(self, tokenizer: Any, record: Record, max_length: int) -> ExplanationInputs:
        texts = [record.text] + ([record.text_pair] if self._pairs() and record.text_pair else [])
        sides = [tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
                 for text in texts]
        words: list[Word] = []
        word_index: list[list[int]] = []  # per side, per token: its word's index in ``words``
        for side, (text, enc) in enumerate(zip(texts, sides, strict=True)):
            spans: dict[int, list[int]] = {}
            for token, (word, (start, end)) in enumerate(zip(enc.word_ids(), enc["offset_mapping"], strict=True)):
                span = spans.setdefault(token if word is None else word, [start, end])
                span[0], span[1] = min(span[0], start), max(span[1], end)
            first = len(words)
            order = {key: first + k for k, key in enumerate(sorted(spans, key=lambda key: spans[key][0]))}
            words += [Word(text[a:b], a, b, side) for a, b in sorted(spans.values())]
            word_index.append([order[token if word is None else word] for token, word in enumerate(enc.word_ids())])
        windows, _ = self.windows(Template.probe(tokenizer), sides[0]["input_ids"],
                                  sides[1]["input_ids"] if len(sides) > 1 else None, max_length)
        word_of = [[None if source is None else word_index[source[0]][source[1]] for source in positions]
                   for _, positions in windows]
        return ExplanationInputs([item for item, _ in windows], word_of, words)

    def explanation_targets(self, output: torch.Tensor, inputs: ExplanationInputs, record: Record,
                            target: str | None) -> list[ExplanationTarget]:
        aggregate_max = self.task_config.window_aggregate == "max"
        document = output.max(dim=0).values if aggregate_max else output.mean(dim=0)
        targets = []
        for index, name in self.explained_outputs(document, target):
            if aggregate_max:  # the document's output is one window's: all of it comes from that window
                share = torch.nn.functional.one_hot(output[:, index].argmax(), len(output)).float()
            else:
                share = torch.full((len(output),), 1.0 / len(output))
            targets.append(ExplanationTarget(name, lambda out, k=index, w=share: out[:, k] * w.to(out.device)))
        return targets

    def explained_outputs(self, document: torch.Tensor, target: str | None) -> list[tuple[int, str]]:
        """The output indices to explain for a document's output row, with their names."""
        return [(0, "score")]

    # --- one output per record, made of its windows' outputs ---
    @staticmethod
    def window_counts(features: Features) -> list[int]:
        """How many consecutive items (windows) each record has, in record order."""
        counts: list[int] = []
        previous = None
        for n, item in enumerate(features.items):
            example = item.get("example", n)
            if counts and example == previous:
                counts[-1] += 1
            else:
                counts.append(1)
            previous = example
        return counts

    def documents(self, outputs: Sequence[torch.Tensor], features: Features) -> tuple[torch.Tensor, list[dict]]:
        """The output row of each record (its windows' rows aggregated by ``task.window_aggregate``), and each
        record's first item (which carries its target)."""
        if not outputs:
            return torch.empty(0), []
        rows = torch.stack(list(outputs)).float()
        counts = self.window_counts(features)
        starts = [0, *np.cumsum(counts)[:-1].tolist()]
        firsts = [features.items[start] for start in starts]
        if len(counts) == len(rows):  # one item per record: nothing to aggregate
            return rows, firsts
        groups = torch.split(rows, counts)  # a record's windows are consecutive items
        if self.task_config.window_aggregate == "max":
            return torch.stack([g.max(dim=0).values for g in groups]), firsts
        return torch.stack([g.mean(dim=0) for g in groups]), firsts

    # --- training: every record weighs the same, however many windows it has ---
    target_keys = ("labels", "weights")

    def collate_targets(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Each item's target (a number, or a fixed-size row such as a multi-hot one) and its window weight."""
        return {"labels": torch.tensor([item["labels"] for item in items], dtype=self.label_dtype),
                "weights": torch.tensor([item.get("weight", 1.0) for item in items], dtype=torch.float)}

    def loss_units(self, items: Sequence[dict[str, Any]]) -> float:
        return sum(item.get("weight", 1.0) for item in items)

    @staticmethod
    def weighted(per_item: torch.Tensor, batch: dict[str, torch.Tensor]) -> LossTerms:
        """The loss of a batch of windows: each window's loss times its weight (one over its record's windows)."""
        weights = batch.get("weights")
        if weights is None:
            return LossTerms(per_item.sum(), len(per_item))
        return LossTerms((per_item * weights.to(per_item.device)).sum(), float(weights.sum()))

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

