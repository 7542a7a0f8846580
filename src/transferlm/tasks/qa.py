"""Extractive question answering: a start and an end logit per token, the answer is a span of the context.

The question is never truncated. A context too long for one window of ``model.max_length`` becomes
overlapping windows that share ``task.stride`` tokens; each window keeps the character offsets of its
context tokens, so any span maps back to the exact text. Training targets the first gold answer that lies
wholly inside a window, and position 0 (the first token, never a context token) in windows without
one; unanswerable questions (SQuAD v2.0) target position 0 everywhere.

Decoding searches the ``task.n_best`` best starts and ends of every window of a question for the best
legal span (end not before start, at most ``task.max_answer_length`` tokens, inside the context). Where
the training data has unanswerable questions, "no answer" wins when the null score (the lowest position-0
score over the windows) exceeds the best span's score by more than a threshold tuned on validation.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from transformers.modeling_outputs import QuestionAnsweringModelOutput

from transferlm.config.selected import TaskSettings
from transferlm.data.records import Record
from transferlm.data.squad import Answer, QaColumns, read_qa_records, summarise_ids
from transferlm.errors import ConfigError, DataError
from transferlm.evaluation.qa import best_null_threshold, example_scores, squad_metrics
from transferlm.tasks.base import Features, LossTerms, ProbeTargets, Task, register_task
from transferlm.tasks.explanation import ExplanationInputs, ExplanationTarget, whitespace_words, word_at
from transferlm.tasks.heads import FeatureHead
from transferlm.tasks.long_inputs import Template
from transferlm.tasks.qa_spans import Decoded, best_span, span_probability

log = logging.getLogger(__name__)

DEFAULT_STRIDE = 128
MIN_CONTEXT = 8  # context tokens a window must hold, or the question is reported as too long
NULL = 0  # the position that means "no answer in this window"


class QaSettings(QaColumns, TaskSettings):
    type: Literal["qa"] = "qa"
    stride: Optional[int] = Field(
        None, ge=0,
        description=f"Subword tokens shared by consecutive windows of a long context (the doc_stride of the SQuAD "
        f"scripts); null: {DEFAULT_STRIDE}, capped at half of the context a window holds.",
    )
    max_answer_length: int = Field(30, gt=0, description="The longest answer predicted, in subword tokens.")
    n_best: int = Field(
        20, gt=0, description="Start and end positions per window searched for the best legal answer span."
    )


class QaTask(Task):
    name = "qa"
    pipeline_tag = "question-answering"
    settings = QaSettings
    default_metric = "f1"
    metric_directions = {"f1": True, "exact_match": True}
    baselines = ("overlap",)
    auto_model = "AutoModelForQuestionAnswering"
    target_keys = ("start_positions", "end_positions")
    calibrates = True

    def __init__(self, task, data):
        super().__init__(task, data)
        self.stride = DEFAULT_STRIDE if task.stride is None else task.stride
        self.allow_null = False  # learned from train: does it have unanswerable questions?
        self.null_threshold = 0.0

    # --- data ---
    def read_records(self, path: Path, need_label: bool = True) -> tuple[list[Record], list[str]]:
        return read_qa_records(path, self.data_config, need_label, self.task_config)

    def input_record(self, item: Any, index: int) -> Record:
        """A ``{"question": ..., "context": ...}`` dict (an ``id`` is kept) or a ``(question, context)`` pair."""
        if isinstance(item, dict):
            question, context, qid = item.get("question"), item.get("context"), item.get("id", index)
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            (question, context), qid = item, index
        else:
            raise DataError(f"input {index}: expected {{'question': ..., 'context': ...}} or a (question, context) "
                            f"pair, got {type(item).__name__}")
        missing = [name for name, value in (("question", question), ("context", context))
                   if not isinstance(value, str) or not value.strip()]
        if missing:
            raise DataError(f"input {index}: no {' and no '.join(missing)}; give both as non-empty strings")
        return Record(question, context, None, index, id=str(qid))

    def input_schema(self) -> dict[str, Any]:
        text = {"type": "string", "pattern": r"\S"}
        return {"anyOf": [{"type": "object", "required": ["question", "context"],
                           "properties": {"question": text, "context": text, "id": {"type": ["string", "integer"]}}},
                          {"type": "array", "items": text, "minItems": 2, "maxItems": 2,
                           "description": "A (question, context) pair."}]}

    def record_row(self, record: Record, with_label: bool = True) -> dict[str, Any]:
        row: dict[str, Any] = {"id": record.id, "question": record.text, "context": record.text_pair}
        if with_label and record.label is not None:
            row["answers"] = [{"text": a.text, "answer_start": a.start} for a in record.label]
        return row

    def read_back_keys(self) -> dict[str, Any]:
        return {"task.question_column": "question", "task.context_column": "context",
                "task.answers_column": "answers", "task.id_column": "id"}

    def split_group(self, record: Record) -> Any:
        return record.text_pair  # a context's questions stay together: no context in both train and validation

    # --- labels ---
    def label_profile(self, records: Sequence[Record]) -> dict[str, Any] | None:
        answered = sum(bool(r.label) for r in records)
        return {"answerable": answered, "unanswerable": len(records) - answered}

    def fit_labels(self, train, others, train_name="train") -> list[str]:
        self.allow_null = any(not r.label for r in train)
        if all(not r.label for r in train):
            return [f"{train_name}: every question is unanswerable; extractive QA needs answered questions to learn "
                    "from"]
        return self.check_labels(others)

    def check_labels(self, splits: dict[str, Sequence[Record]]) -> list[str]:
        if self.allow_null:
            return []
        return [summarise_ids(where, "are unanswerable, but no training question is, so the model never learns "
                              "to answer 'no answer'", ids, "add unanswerable questions (SQuAD v2.0 style) to train, "
                              "or leave these out")
                for where, records in splits.items() if (ids := [r.id for r in records if not r.label])]

    def state(self) -> dict[str, Any]:
        return {"allow_null": self.allow_null, "null_threshold": self.null_threshold}

    def load_state(self, state: dict[str, Any]) -> None:
        self.allow_null = bool(state["allow_null"])
        self.null_threshold = float(state["null_threshold"])

    # --- model ---
    def feature_head(self, model: nn.Module) -> FeatureHead | None:
        backbone = getattr(model, model.base_model_prefix, None)
        outputs = getattr(model, "qa_outputs", None)
        if backbone is None or not isinstance(outputs, nn.Linear):
            return None

        def states(**inputs):
            return backbone(**inputs).last_hidden_state

        def head(features):
            start, end = outputs(features).split(1, dim=-1)
            return QuestionAnsweringModelOutput(start_logits=start.squeeze(-1), end_logits=end.squeeze(-1))

        return FeatureHead(model, states, head,
                           collate_features=lambda rows: torch.nn.utils.rnn.pad_sequence(rows, batch_first=True))

    # --- features ---
    def encode(self, tokenizer, records: Sequence[Record], max_length: int, with_labels: bool = True) -> Features:
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(f"task qa maps answers to characters with a fast tokenizer's offsets; "
                              f"{type(tokenizer).__name__} is not one (use a model with a tokenizer.json)")
        questions = tokenizer([r.text for r in records], add_special_tokens=False)["input_ids"]
        specials = tokenizer.num_special_tokens_to_add(pair=True)
        groups: dict[int, list[int]] = defaultdict(list)  # effective stride -> examples
        too_long = []
        for n, ids in enumerate(questions):
            room = max_length - len(ids) - specials
            if room < MIN_CONTEXT:
                too_long.append(records[n].id or str(n))
            else:
                groups[min(self.stride, room // 2)].append(n)
        if too_long:
            raise DataError(summarise_ids("input", f"are too long for model.max_length {max_length} (fewer "
                                          f"than {MIN_CONTEXT} context tokens would fit beside them)", too_long,
                                          "raise model.max_length or shorten the questions; questions are never cut"))
        windows: dict[int, list[dict[str, Any]]] = {}
        for stride, examples in groups.items():
            for chunk in range(0, len(examples), 1000):
                part = examples[chunk:chunk + 1000]
                enc = tokenizer([records[n].text for n in part], [records[n].text_pair for n in part],
                                truncation="only_second", max_length=max_length, stride=stride,
                                return_overflowing_tokens=True, return_offsets_mapping=True)
                for w, k in enumerate(enc["overflow_to_sample_mapping"]):
                    windows.setdefault(part[k], []).append(self._window(enc, w, part[k], records[part[k]]))
        items, unfit = [], []
        for n, record in enumerate(records):
            example = windows[n]
            if with_labels:
                self._targets(example, record)
                if record.label and all(item["labels"] == (NULL, NULL) for item in example):
                    unfit.append(record.id or str(n))
            items += example
        problems = (summarise_ids("input", "have no answer that fits wholly inside one window", unfit,
                                  f"raise model.max_length ({max_length} now), or leave these questions out"),
                    ) if unfit else ()
        return Features(items, [len(item["input_ids"]) for item in items], problems)

    def _window(self, enc, w: int, example: int, record: Record) -> dict[str, Any]:
        sequence = enc.sequence_ids(w)
        offsets = [tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][w], sequence, strict=True)]
        if offsets[NULL] is not None:
            raise ConfigError("task qa needs the question before the context; this tokenizer puts the context first")
        item = {"input_ids": enc["input_ids"][w], "example": example, "offsets": offsets, "context": record.text_pair}
        if "token_type_ids" in enc:
            item["token_type_ids"] = enc["token_type_ids"][w]
        return item

    def _targets(self, example: list[dict[str, Any]], record: Record) -> None:
        """Each window's (start, end) target: the first gold answer wholly inside it, else (NULL, NULL); and
        the gold answer texts for the metrics."""
        for item in example:
            item["answers"] = tuple(a.text for a in record.label)
            item["labels"] = next((span for a in record.label if (span := _token_span(item["offsets"], a))),
                                  (NULL, NULL))

    def probe_targets(self, item: dict[str, Any]) -> ProbeTargets:
        """Each context position of a window that holds an answer: 1 where the answer starts, 2 where it ends
        (1 for a one-token answer), 0 elsewhere; a window without the answer has no targets."""
        start, end = item["labels"]
        if (start, end) == (NULL, NULL):
            return ProbeTargets("token", [], [], regression=False)
        positions = [i for i, offset in enumerate(item["offsets"]) if offset is not None]
        values = [1 if i == start else 2 if i == end else 0 for i in positions]
        return ProbeTargets("token", values, positions, regression=False)

    def collate_targets(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        spans = torch.tensor([item["labels"] for item in items], dtype=torch.long)
        return {"start_positions": spans[:, 0], "end_positions": spans[:, 1]}

    def loss(self, outputs, batch) -> LossTerms:
        start = F.cross_entropy(outputs.start_logits.float(), batch["start_positions"], reduction="sum")
        end = F.cross_entropy(outputs.end_logits.float(), batch["end_positions"], reduction="sum")
        return LossTerms((start + end) / 2, len(batch["start_positions"]))

    def logits(self, outputs: Any) -> torch.Tensor:
        return torch.stack([outputs.start_logits, outputs.end_logits], dim=-1)

    def output_rows(self, output: torch.Tensor, items: Sequence[dict[str, Any]]) -> list[torch.Tensor]:
        return [output[row, : len(item["input_ids"])] for row, item in enumerate(items)]

    # --- outputs ---
    def decode(self, outputs: Sequence[torch.Tensor], features: Features) -> list[tuple[Decoded, tuple[str, ...]]]:
        """Per question, in order: its decoding and its gold answer texts (empty without labels)."""
        grouped: dict[int, list[tuple[torch.Tensor, dict[str, Any]]]] = defaultdict(list)
        for row, item in zip(outputs, features.items, strict=True):
            grouped[item["example"]].append((row, item))
        result = []
        for example in sorted(grouped):
            windows = [(row[:, 0].numpy(), row[:, 1].numpy(), item["offsets"]) for row, item in grouped[example]]
            result.append((self._decoded(windows, grouped[example]), grouped[example][0][1].get("answers", ())))
        return result

    def _decoded(self, windows, rows) -> Decoded:
        nulls = [float(start[NULL] + end[NULL]) for start, end, _ in windows]
        w_null = int(np.argmin(nulls))
        null_probability = span_probability(*windows[w_null][:2], NULL, NULL)
        span = best_span(windows, self.task_config.n_best, self.task_config.max_answer_length)
        if span is None:
            return Decoded("", None, None, 0.0, float("-inf"), nulls[w_null], null_probability)
        start, end, offsets = windows[span.window]
        a, b = offsets[span.start][0], offsets[span.end][1]
        context = rows[span.window][1]["context"]
        return Decoded(context[a:b], a, b, span_probability(start, end, span.start, span.end), span.score,
                       nulls[w_null], null_probability)

    def abstains(self, decoded: Decoded) -> bool:
        if decoded.start is None:
            return True
        return self.allow_null and decoded.null_margin > self.null_threshold

    def answer_text(self, decoded: Decoded) -> str:
        return "" if self.abstains(decoded) else decoded.text

    def metrics(self, outputs: Sequence[torch.Tensor], features: Features) -> dict[str, Any]:
        decoded = self.decode(outputs, features)
        result = squad_metrics([self.answer_text(d) for d, _ in decoded], [gold for _, gold in decoded])
        if self.allow_null:
            threshold, best = self._best_threshold(decoded)
            result.update(null_threshold=self.null_threshold, best_f1=best, best_f1_null_threshold=threshold)
        return result

    def _best_threshold(self, decoded) -> tuple[float, float]:
        """Questions with a legal span decide by the threshold; those without one always abstain."""
        spans = [(d, gold) for d, gold in decoded if d.start is not None]
        fixed = sum(1.0 for d, gold in decoded if d.start is None and not gold)
        if not spans:
            return self.null_threshold, fixed / max(len(decoded), 1)
        threshold, f1 = best_null_threshold([d.null_margin for d, _ in spans],
                                            [example_scores(d.text, gold)[1] for d, gold in spans],
                                            [bool(gold) for _, gold in spans])
        return threshold, (f1 * len(spans) + fixed) / len(decoded)

    def calibrate(self, outputs: Sequence[torch.Tensor], features: Features) -> dict[str, Any] | None:
        """With unanswerable training questions: the null threshold that maximises validation F1."""
        if not self.allow_null:
            return None
        self.null_threshold, best = self._best_threshold(self.decode(outputs, features))
        log.info("qa: null threshold %.3f tuned on validation (F1 %.4f)", self.null_threshold, best)
        return {"null_threshold": self.null_threshold, "validation_f1": best}

    def example_scores(self, outputs: Sequence[torch.Tensor], features: Features) -> list[float] | None:
        return [example_scores(self.answer_text(d), gold)[1] for d, gold in self.decode(outputs, features)]

    # --- explanations: the answer's start and end logits ---
    def explanation_inputs(self, tokenizer, record: Record, max_length: int) -> ExplanationInputs:
        items = self.encode(tokenizer, [record], max_length, with_labels=False).items
        question = tokenizer(record.text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        words = whitespace_words(record.text, 0) + whitespace_words(record.text_pair, 1)
        n_question = len(whitespace_words(record.text, 0))
        at_char = [word_at(words[:n_question]), word_at(words[n_question:], n_question)]
        first = len(Template.probe(tokenizer).pair[0])  # the question follows the special tokens before it
        word_of = []
        for item in items:
            row: list[int | None] = [None] * len(item["input_ids"])
            for k, (a, _) in enumerate(question["offset_mapping"]):
                row[first + k] = at_char[0](a)
            for position, offsets in enumerate(item["offsets"]):
                if offsets is not None:
                    row[position] = at_char[1](offsets[0])
            word_of.append(row)
        return ExplanationInputs(items, word_of, words)

    def explanation_targets(self, output: torch.Tensor, inputs: ExplanationInputs, record: Record,
                            target: str | None) -> list[ExplanationTarget]:
        rows = self.output_rows(output, inputs.items)
        windows = [(row[:, 0].numpy(), row[:, 1].numpy(), item["offsets"]) for row, item in zip(rows, inputs.items,
                                                                                              strict=True)]
        span = best_span(windows, self.task_config.n_best, self.task_config.max_answer_length)
        if span is None:
            return []
        a, b = inputs.items[span.window]["offsets"][span.start][0], inputs.items[span.window]["offsets"][span.end][1]
        answer = record.text_pair[a:b]

        def at(position: int, which: int):
            return lambda out: torch.zeros(len(out), dtype=out.dtype, device=out.device).index_add(
                0, torch.tensor([span.window], device=out.device), out[span.window, position, which].reshape(1))

        return [ExplanationTarget(f"start of the answer {answer!r}", at(span.start, 0)),
                ExplanationTarget(f"end of the answer {answer!r}", at(span.end, 1))]

    def predictions(self, outputs, features: Features, records: Sequence[Record]) -> list[dict[str, Any]]:
        decoded_all = self.decode(outputs, features)
        if len(decoded_all) != len(records):
            raise RuntimeError(f"{len(decoded_all)} decoded questions for {len(records)} records")
        out = []
        for decoded, _ in decoded_all:
            if self.abstains(decoded):
                out.append({"answer": None, "start": None, "end": None, "score": round(decoded.null_probability, 6),
                            "no_answer": True})
            else:
                out.append({"answer": decoded.text, "start": decoded.start, "end": decoded.end,
                            "score": round(decoded.probability, 6), "no_answer": False})
        return out


def _token_span(offsets: Sequence[tuple[int, int] | None], answer: Answer) -> tuple[int, int] | None:
    """The window's token positions (inclusive) covering ``answer``, or None unless it lies wholly inside."""
    positions = [p for p, o in enumerate(offsets) if o is not None]
    if not positions or offsets[positions[0]][0] > answer.start or offsets[positions[-1]][1] < answer.end:
        return None
    start = next(i for i, p in enumerate(positions) if offsets[p][1] > answer.start)
    end = start
    while end + 1 < len(positions) and offsets[positions[end + 1]][0] < answer.end:
        end += 1
    return positions[start], positions[end]


register_task(QaTask)
