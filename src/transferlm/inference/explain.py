"""Why did the model predict that? Token attributions by layer integrated gradients, merged into words.

Integrated gradients (Sundararajan et al., 2017, "Axiomatic Attribution for Deep Networks") on the embedding layer
(Captum's ``LayerIntegratedGradients``): each token's share of the difference between the model's output on the input
and on a baseline input whose text tokens are replaced by ``explain.baseline`` tokens (special tokens kept). The
shares add up to that difference (completeness) up to the integral's approximation error, reported as ``delta``.
Subword scores are summed into words. A long input read in windows is explained per window; with
``window_aggregate: mean`` the document's output is the mean of its windows', so each window's scores count one over
the window count and a token read by two windows gets both shares.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any, Literal, Optional

import torch
from pydantic import Field
from torch import nn

from transferlm.config.selected import CommandSettings
from transferlm.data.records import Record
from transferlm.errors import ConfigError
from transferlm.extras import require
from transferlm.tasks.base import pad_inputs
from transferlm.tasks.long_inputs import Template


class ExplainSettings(CommandSettings):
    section = "explain"
    target: Optional[str] = Field(
        None, description="The label to explain (classification); default: the predicted one (multi-label: each "
        "predicted label).",
    )
    steps: int = Field(50, ge=2, le=1000, description="Integration steps (more: a smaller delta, slower).")
    baseline: Literal["pad", "mask", "unk"] = Field(
        "pad", description="The token that replaces every text token in the baseline input (special tokens stay).",
    )
    internal_batch_size: int = Field(16, ge=1, description="Interpolated inputs per forward pass (memory).")


def input_embeddings(model: nn.Module) -> nn.Module:
    """The token embedding layer, also inside a mean-pooling head's backbone."""
    inner = getattr(model, "backbone", model)
    return inner.get_input_embeddings()


class Explainer:
    def __init__(self, model: nn.Module, task, tokenizer: Any, max_length: int, settings: ExplainSettings):
        if not hasattr(task, "windows"):
            raise ConfigError(f"explain: task {task.name} is not explained yet (classification and regression are)")
        require("captum", "explain", "token attributions")
        self.model, self.task, self.tokenizer = model.eval(), task, tokenizer
        self.max_length, self.settings = max_length, settings
        self.template = Template.probe(tokenizer)
        self.baseline_id = self._baseline_id()

    def _baseline_id(self) -> int:
        name = self.settings.baseline
        token_id = getattr(self.tokenizer, f"{name}_token_id", None)
        if token_id is None:
            raise ConfigError(f"explain.baseline: the tokenizer has no {name} token; choose another of pad, mask, unk")
        return token_id

    def targets(self, logits: torch.Tensor) -> list[int]:
        """Output indices to explain for one document's output row."""
        if self.task.name == "regression":
            return [0]
        labels = self.task.label_map.labels
        if self.settings.target is not None:
            index = self.task.label_map.index()
            if self.settings.target not in index:
                raise ConfigError(f"explain.target: the model has no label {self.settings.target!r}; its labels are "
                                  f"{', '.join(labels)}")
            return [index[self.settings.target]]
        _, decided = self.task.decide(logits.unsqueeze(0))
        if self.task.multi_label:
            return [i for i, on in enumerate(decided[0]) if on] or [int(logits.argmax())]
        return [int(decided[0])]

    def explain(self, record: Record) -> dict[str, Any]:
        sides = [self._side(record.text)]
        if record.text_pair:
            sides.append(self._side(record.text_pair))
        windows, _ = self.task.windows(self.template, sides[0]["ids"], sides[1]["ids"] if len(sides) > 1 else None,
                                       self.max_length)
        batch = pad_inputs([item for item, _ in windows], self.tokenizer.pad_token_id)
        with torch.no_grad():
            outputs = self.task.logits(self.model(**batch)).float()
        document = outputs.max(dim=0).values if self._max() else outputs.mean(dim=0)
        explained = [self._attribute(batch, windows, sides, self._window_shares(outputs, target), target, record)
                     for target in self.targets(document)]
        return {"line": record.line, "explanations": explained}

    def _max(self) -> bool:
        return self.task.task_config.window_aggregate == "max"

    def _window_shares(self, outputs: torch.Tensor, target: int) -> torch.Tensor:
        """How much each window's output counts in the document's: equally for the mean; for the max, all of it
        in the window holding the maximum."""
        if self._max():
            return torch.nn.functional.one_hot(outputs[:, target].argmax(), len(outputs)).float()
        return torch.full((len(outputs),), 1.0 / len(outputs))

    def _side(self, text: str) -> dict[str, Any]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return {"text": text, "ids": enc["input_ids"], "offsets": enc["offset_mapping"], "words": enc.word_ids()}

    def _attribute(self, batch, windows, sides, share: torch.Tensor, target: int, record: Record) -> dict[str, Any]:
        from captum.attr import LayerIntegratedGradients

        text_positions = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
        for row, (_, positions) in enumerate(windows):
            for column, source in enumerate(positions):
                text_positions[row, column] = source is not None
        baseline = torch.where(text_positions, torch.full_like(batch["input_ids"], self.baseline_id),
                               batch["input_ids"])
        extra = {k: v for k, v in batch.items() if k != "input_ids"}

        def forward(input_ids, *rest):
            out = self.task.logits(self.model(input_ids=input_ids, **dict(zip(extra, rest, strict=True))))
            return out.float()[:, target]

        integrated = LayerIntegratedGradients(forward, input_embeddings(self.model))
        attributions, delta = integrated.attribute(
            batch["input_ids"], baselines=baseline, additional_forward_args=tuple(extra.values()),
            n_steps=self.settings.steps, internal_batch_size=self.settings.internal_batch_size,
            return_convergence_delta=True)
        scores = attributions.sum(dim=-1).detach() * share.unsqueeze(1)  # a window counts as it does in the output
        with torch.no_grad():
            at_input = forward(batch["input_ids"], *extra.values())
            at_baseline = forward(baseline, *extra.values())
        words = self._words(scores, windows, sides)
        return {"target": self._target_name(target), "output": float((share * at_input).sum()),
                "baseline_output": float((share * at_baseline).sum()),
                "delta": float((share * delta.detach().abs()).sum()), "windows": len(windows), "words": words}

    def _target_name(self, target: int) -> str:
        if self.task.name == "regression":
            return "score"
        return self.task.label_map.external(self.task.label_map.labels[target])

    def _words(self, scores: torch.Tensor, windows, sides) -> list[dict[str, Any]]:
        totals: dict[tuple[int, int], float] = {}
        for row, (_, positions) in enumerate(windows):
            for column, source in enumerate(positions):
                if source is None:
                    continue
                side, token = source
                word = sides[side]["words"][token]
                key = (side, token if word is None else word)
                totals[key] = totals.get(key, 0.0) + float(scores[row, column])
        out = []
        for side, info in enumerate(sides):
            spans: dict[int, list[int]] = {}
            for token, word in enumerate(info["words"]):
                key = token if word is None else word
                start, end = info["offsets"][token]
                span = spans.setdefault(key, [start, end])
                span[0], span[1] = min(span[0], start), max(span[1], end)
            for key, (start, end) in sorted(spans.items(), key=lambda kv: kv[1][0]):
                out.append({"word": info["text"][start:end], "start": start, "end": end, "side": side,
                            "score": round(totals.get((side, key), 0.0), 6)})
        return out


def explanations_html(results: Sequence[dict[str, Any]]) -> str:
    """A page with each input's words shaded by their score: green for, red against, stronger for larger."""
    blocks = []
    for result in results:
        for explained in result["explanations"]:
            peak = max((abs(w["score"]) for w in explained["words"]), default=0.0) or 1.0
            spans = []
            for w in explained["words"]:
                alpha = min(1.0, abs(w["score"]) / peak)
                color = f"rgba(46,160,67,{alpha:.2f})" if w["score"] >= 0 else f"rgba(215,58,73,{alpha:.2f})"
                spans.append(f"<span title='{w['score']:.4f}' style='background:{color}'>{html.escape(w['word'])}"
                             "</span>")
            blocks.append(f"<div class='x'><p class='h'>line {result['line']}: {html.escape(explained['target'])} "
                          f"(output {explained['output']:.3f}, baseline {explained['baseline_output']:.3f}, delta "
                          f"{explained['delta']:.2g})</p><p>{' '.join(spans)}</p></div>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>transferlm explain</title><style>"
            "body{font-family:sans-serif;max-width:1000px;margin:2em auto}.x{border-bottom:1px solid #ddd}"
            ".h{color:#555;font-size:90%}span{padding:1px 2px;border-radius:3px}</style></head><body>"
            "<h1>transferlm explain</h1><p>Integrated gradients on the embedding layer; green words push towards "
            "the explained label, red away.</p>" + "".join(blocks) + "</body></html>\n")
