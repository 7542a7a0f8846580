"""Named-entity recognition: token classification over words, with exact subword alignment.

Words are tokenised into subwords; a word's tag sits on its first subword and its other subwords are
left out of the loss (``task.label_all_subwords`` labels them too, B- becoming I-). A sentence longer
than ``model.max_length`` becomes overlapping windows (``tasks/windows.py``) that are merged back, so
no word is dropped from training, evaluation or prediction. Predictions are decoded with a constrained
Viterbi search over the word-level tag probabilities, so they are always valid BIO (no I- after O).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from transformers.modeling_outputs import TokenClassifierOutput

from transferlm.config.selected import TaskSettings
from transferlm.data import tagging
from transferlm.data.readers import summarise_lines
from transferlm.data.records import Record
from transferlm.data.sequences import SequenceColumns, read_sequence_records
from transferlm.errors import DataError
from transferlm.evaluation.ner import entity_metrics
from transferlm.tasks.base import IGNORE, Features, LossTerms, Task, register_task
from transferlm.tasks.explanation import ExplanationInputs, ExplanationTarget, Word
from transferlm.tasks.heads import FeatureHead
from transferlm.tasks.windows import context, plan_windows

DEFAULT_STRIDE = 32


class NerSettings(SequenceColumns, TaskSettings):
    type: Literal["ner"] = "ner"
    stride: Optional[int] = Field(
        None, ge=0,
        description=f"Subword tokens shared by consecutive windows of a sentence longer than model.max_length; "
        f"null: {DEFAULT_STRIDE}.",
    )
    label_all_subwords: bool = Field(
        False,
        description="Train on every subword of a word (later pieces of a B- word get I-) instead of only the first; "
        "predictions always read the first subword.",
    )


class NerTask(Task):
    name = "ner"
    pipeline_tag = "token-classification"
    settings = NerSettings
    default_metric = "f1"
    metric_directions = {"f1": True, "precision": True, "recall": True, "token_accuracy": True}
    baselines = ("crf",)
    auto_model = "AutoModelForTokenClassification"

    def __init__(self, task, data):
        super().__init__(task, data)
        self.labels: list[str] = []
        self.stride = DEFAULT_STRIDE if task.stride is None else task.stride

    # --- data and labels ---
    def read_records(self, path: Path, need_label: bool = True) -> tuple[list[Record], list[str]]:
        return read_sequence_records(path, self.data_config, need_label, self.task_config)

    def input_record(self, item: Any, index: int) -> Record:
        """A string is raw text (entities come back with character offsets); a list of strings is
        pre-tokenised (one tag per token comes back)."""
        if isinstance(item, str):
            words = tagging.words_with_offsets(item)
            if not words:
                raise DataError(f"input {index}: no words in {item!r}")
            return Record(item, None, None, index, tuple(item[s:e] for s, e in words), tuple(words))
        if isinstance(item, (list, tuple)) and item and all(isinstance(t, str) for t in item):
            return Record(" ".join(item), None, None, index, tuple(item))
        raise DataError(f"input {index}: expected a text string or a non-empty list of token strings, "
                        f"got {type(item).__name__}")

    def input_schema(self) -> dict[str, Any]:
        return {"anyOf": [{"type": "string", "pattern": r"\S", "description": "Raw text (at least one word)."},
                          {"type": "array", "items": {"type": "string"}, "minItems": 1,
                           "description": "Pre-tokenised text."}]}

    def record_row(self, record: Record, with_label: bool = True) -> dict[str, Any]:
        row: dict[str, Any] = {"text": record.text, "tokens": list(record.tokens)}
        if with_label and record.label is not None:
            row["tags"] = list(record.label)
        return row

    def read_back_keys(self) -> dict[str, Any]:  # the tags are written after conversion to BIO
        return {"task.tokens_column": "tokens", "task.tags_column": "tags", "task.tag_scheme": "bio"}

    def label_profile(self, records: Sequence[Record]) -> dict[str, Any] | None:
        counts = Counter(tag[2:] for r in records if r.label for tag in r.label if tag.startswith("B-"))
        return {"entities": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))} if counts else None

    def fit_labels(self, train, others, train_name="train") -> list[str]:
        types = sorted({tag[2:] for r in train for tag in r.label if tag != "O"})
        if not types:
            return [f"{train_name}: no entities in the training data (every tag is O); check the tag column "
                    "(task.conll_tag_column / task.tags_column)"]
        self.labels = ["O"] + [f"{p}-{t}" for t in types for p in "BI"]
        return self.check_labels(others)

    def check_labels(self, splits: dict[str, Sequence[Record]]) -> list[str]:
        known = {tag[2:] for tag in self.labels if tag != "O"}
        problems = []
        for where, records in splits.items():
            unseen: dict[str, list[int]] = {}
            for r in records:
                for kind in {tag[2:] for tag in r.label if tag != "O"} - known:
                    unseen.setdefault(kind, []).append(r.line)
            problems += [summarise_lines(where, f"have entity type {kind!r}, which never occurs in training", lines,
                                         f"known types are {', '.join(sorted(known))}; add training examples of it "
                                         "or retag those sentences") for kind, lines in sorted(unseen.items())]
        return problems

    def state(self) -> dict[str, Any]:
        return {"labels": self.labels}

    def load_state(self, state: dict[str, Any]) -> None:
        self.labels = list(state["labels"])

    # --- model ---
    def head_config(self) -> dict[str, Any]:
        return dict(num_labels=len(self.labels), id2label=dict(enumerate(self.labels)),
                    label2id={tag: i for i, tag in enumerate(self.labels)})

    def feature_head(self, model: nn.Module) -> FeatureHead | None:
        backbone = getattr(model, model.base_model_prefix, None)
        if backbone is None or not hasattr(model, "classifier") or not hasattr(model, "dropout"):
            return None  # not the usual encoder -> dropout -> linear token classifier

        def states(**inputs):
            return backbone(**inputs).last_hidden_state

        def head(features):
            return TokenClassifierOutput(logits=model.classifier(model.dropout(features)))

        return FeatureHead(model, states, head, collate_features=_pad_rows)

    # --- features ---
    def encode(self, tokenizer, records: Sequence[Record], max_length: int, with_labels: bool = True) -> Features:
        words, whole = _tokenize(tokenizer, records)
        budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
        index = {tag: i for i, tag in enumerate(self.labels)}
        items, lengths = [], []
        for n, record in enumerate(records):
            tags = [index[t] for t in record.label] if with_labels else None
            if len(whole["input_ids"][n]) <= max_length:
                pieces = [(whole, n, 0, (0, len(words[n])))]
            else:
                counts = np.bincount([w for w in whole.word_ids(n) if w is not None], minlength=len(words[n]))
                pieces = []
                for a, b in plan_windows(counts.tolist(), budget, self.stride):
                    enc = tokenizer([words[n][a:b]], is_split_into_words=True, truncation=True, max_length=max_length)
                    pieces.append((enc, 0, a, (a, b)))
            for enc, row, offset, window in pieces:
                item = self._item(enc, row, offset, window, tags)
                item["example"] = n
                items.append(item)
                lengths.append(len(item["input_ids"]))
        return Features(items, lengths)

    def _item(self, enc, row: int, offset: int, window: tuple[int, int], tags: list[int] | None) -> dict[str, Any]:
        word_ids = [-1 if w is None else w + offset for w in enc.word_ids(row)]
        item: dict[str, Any] = {"input_ids": enc["input_ids"][row], "word_ids": word_ids, "window": window}
        if "token_type_ids" in enc:
            item["token_type_ids"] = enc["token_type_ids"][row]
        if tags is not None:
            labels = []
            for p, w in enumerate(word_ids):
                first = w >= 0 and (p == 0 or word_ids[p - 1] != w)
                if w < 0 or not (first or self.task_config.label_all_subwords):
                    labels.append(IGNORE)
                elif first:
                    labels.append(tags[w])
                else:
                    labels.append(self.labels.index(tagging.continuation(self.labels[tags[w]])))
            item["labels"] = labels
            item["units"] = sum(1 for x in labels if x != IGNORE)
        return item


    def loss_units(self, items: Sequence[dict[str, Any]]) -> int:
        return sum(item["units"] for item in items)

    def loss(self, outputs, batch) -> LossTerms:
        logits, labels = outputs.logits.float(), batch["labels"]
        labels = labels[:, : logits.shape[1]]  # cached features and labels share the batch width
        total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE,
                                reduction="sum")
        return LossTerms(total, int((labels != IGNORE).sum()))

    def output_rows(self, output: torch.Tensor, items: Sequence[dict[str, Any]]) -> list[torch.Tensor]:
        return [output[row, : len(item["input_ids"])] for row, item in enumerate(items)]

    # --- outputs ---
    def word_outputs(self, outputs: Sequence[torch.Tensor], features: Features) -> list[tuple[np.ndarray, list[int]]]:
        """Per example: word-level log-probabilities (words x tags), each word read from its first subword in
        the window where it has the most context, and the gold tag ids (IGNORE without labels)."""
        merged: dict[int, tuple[np.ndarray, np.ndarray, list[int]]] = {}
        for item, row in zip(features.items, outputs, strict=True):
            n_words = max(item["word_ids"]) + 1
            logp, best, gold = merged.setdefault(item["example"], (
                np.zeros((0, len(self.labels)), dtype=np.float32), np.zeros(0, dtype=int), []))
            if len(best) < n_words:  # grow to the words seen so far
                logp = np.vstack([logp, np.zeros((n_words - len(best), len(self.labels)), dtype=np.float32)])
                best = np.concatenate([best, np.full(n_words - len(best), -1)])
                gold += [IGNORE] * (n_words - len(gold))
            scores = torch.log_softmax(row.float(), dim=-1).numpy()
            word_ids, labels = item["word_ids"], item.get("labels")
            for p, w in enumerate(word_ids):
                if w < 0 or (p > 0 and word_ids[p - 1] == w):
                    continue
                here = context(w, item["window"])
                if here > best[w]:
                    logp[w], best[w] = scores[p], here
                    if labels is not None:
                        gold[w] = labels[p]
            merged[item["example"]] = (logp, best, gold)
        result = []
        for example in sorted(merged):
            logp, best, gold = merged[example]
            if (best < 0).any():
                raise RuntimeError(f"example {example}: words {np.flatnonzero(best < 0).tolist()} got no output")
            result.append((logp, gold))
        return result

    def decode(self, logp: np.ndarray) -> list[int]:
        return viterbi(logp, self.labels)

    def metrics(self, outputs: Sequence[torch.Tensor], features: Features) -> dict[str, Any]:
        gold, predicted = [], []
        for logp, tags in self.word_outputs(outputs, features):
            gold.append([self.labels[t] for t in tags])
            predicted.append([self.labels[t] for t in self.decode(logp)])
        return self.score_tags(gold, predicted)

    def score_tags(self, gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, Any]:
        """Metrics of BIO tag sequences (also used by baselines that predict tags themselves)."""
        return entity_metrics(gold, predicted)

    def predictions(self, outputs, features: Features, records: Sequence[Record]) -> list[dict[str, Any]]:
        out = []
        for record, (logp, _) in zip(records, self.word_outputs(outputs, features), strict=True):
            ids = self.decode(logp)
            tags = [self.labels[i] for i in ids]
            probs = np.exp(logp[np.arange(len(ids)), ids])
            entities = []
            for span in tagging.spans(tags):
                score = round(float(probs[span.start:span.end].mean()), 6)
                if record.offsets is not None:
                    start, end = record.offsets[span.start][0], record.offsets[span.end - 1][1]
                    entities.append({"text": record.text[start:end], "label": span.label, "start": start, "end": end,
                                     "score": score})
                else:
                    entities.append({"text": " ".join(record.tokens[span.start:span.end]), "label": span.label,
                                     "start_token": span.start, "end_token": span.end, "score": score})
            out.append({"entities": entities} if record.offsets is not None else {"tags": tags, "entities": entities})
        return out


    # --- explanations: each predicted entity, by its words' tag logits ---
    def explanation_inputs(self, tokenizer, record: Record, max_length: int) -> ExplanationInputs:
        items = self.encode(tokenizer, [record], max_length, with_labels=False).items
        word_of = [[None if w < 0 else w for w in item["word_ids"]] for item in items]
        if record.offsets is not None:
            words = [Word(record.text[a:b], a, b) for a, b in record.offsets]
        else:
            words = [Word(token, None, None) for token in record.tokens]
        return ExplanationInputs(items, word_of, words)

    def explanation_targets(self, output: torch.Tensor, inputs: ExplanationInputs, record: Record,
                            target: str | None) -> list[ExplanationTarget]:
        features = Features(inputs.items, [len(item["input_ids"]) for item in inputs.items])
        [(logp, _)] = self.word_outputs(self.output_rows(output, inputs.items), features)
        tags = self.decode(logp)
        reading = _reading_positions(inputs.items)
        targets = []
        for span in tagging.spans([self.labels[t] for t in tags]):
            if target is not None and span.label != target:
                continue
            chosen = [(*reading[w], tags[w]) for w in range(span.start, span.end)]
            item, position, tag = (torch.tensor(column) for column in zip(*chosen, strict=True))
            name = f"{span.label}: {' '.join(inputs.words[w].text for w in range(span.start, span.end))}"

            def select(out, item=item, position=position, tag=tag):
                picked = out[item, position, tag]
                return torch.zeros(len(out), dtype=picked.dtype, device=out.device).index_add(0, item, picked)

            targets.append(ExplanationTarget(name, select))
        return targets


def _reading_positions(items: Sequence[dict[str, Any]]) -> dict[int, tuple[int, int]]:
    """Each word's (item, position): its first subword in the window where it has the most context, the position
    ``word_outputs`` reads it from."""
    best: dict[int, tuple[int, int, int]] = {}
    for i, item in enumerate(items):
        word_ids = item["word_ids"]
        for p, w in enumerate(word_ids):
            if w < 0 or (p > 0 and word_ids[p - 1] == w):
                continue
            here = context(w, item["window"])
            if w not in best or here > best[w][0]:
                best[w] = (here, i, p)
    return {w: (i, p) for w, (_, i, p) in best.items()}


def viterbi(logp: np.ndarray, labels: Sequence[str]) -> list[int]:
    """The most probable tag sequence that is valid BIO: I-X only after B-X or I-X."""
    n, k = logp.shape
    allowed = np.ones((k, k), dtype=bool)  # allowed[previous, next]
    start = np.ones(k, dtype=bool)
    for j, tag in enumerate(labels):
        if tag.startswith("I-"):
            start[j] = False
            allowed[:, j] = [prev in (f"B-{tag[2:]}", tag) for prev in labels]
    penalty = np.where(allowed, 0.0, -np.inf)
    score = np.where(start, logp[0], -np.inf)
    back = np.zeros((n, k), dtype=int)
    for t in range(1, n):
        total = score[:, None] + penalty
        back[t] = total.argmax(axis=0)
        score = total.max(axis=0) + logp[t]
    path = [int(score.argmax())]
    for t in range(n - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


def _tokenize(tokenizer, records: Sequence[Record]):
    """The words as the tokenizer gets them, and their encoding. A word that tokenises to nothing (e.g. a
    zero-width space) becomes the unknown token, so it keeps a position and a tag."""
    words = [list(r.tokens) for r in records]
    whole = tokenizer(words, is_split_into_words=True, truncation=False)
    lost = False
    for n, tokens in enumerate(words):
        present = {w for w in whole.word_ids(n) if w is not None}
        if len(present) < len(tokens):
            words[n] = [w if i in present else tokenizer.unk_token for i, w in enumerate(tokens)]
            lost = True
    if lost:
        whole = tokenizer(words, is_split_into_words=True, truncation=False)
    return words, whole


def _pad_rows(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True)


register_task(NerTask)
