"""Why did the model predict that? Token attributions by layer integrated gradients, merged into words.

Integrated gradients (Sundararajan et al., 2017, "Axiomatic Attribution for Deep Networks") on the embedding layer
(Captum's ``LayerIntegratedGradients``): each token's share of the difference between the model's output on the input
and on a baseline input whose text tokens are replaced by ``explain.baseline`` tokens (special tokens kept). The
shares add up to that difference (completeness) up to the integral's approximation error, reported as ``delta``.
Subword scores are summed into words. The task says what its inputs and explained outputs are
(``Task.explanation_inputs`` / ``explanation_targets``): a class logit (a long input's windows each count as much as
they do in the document's output, so a token read by two windows gets both shares), an entity's tag logits (NER,
each predicted entity).
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
from transferlm.tasks.explanation import ExplanationInputs, ExplanationTarget


class ExplainSettings(CommandSettings):
    section = "explain"
    target: Optional[str] = Field(
        None, description="What to explain: a label (classification; default the predicted one, multi-label each "
        "predicted label) or an entity type (ner; default every predicted entity).",
    )
    steps: int = Field(50, ge=2, le=1000, description="Integration steps (more: a smaller delta, slower).")
    baseline: Literal["pad", "mask", "unk"] = Field(
        "pad", description="The token that replaces every text token in the baseline input (special tokens stay).",
    )
    internal_batch_size: int = Field(
        16, ge=1, description="Interpolated inputs per forward pass (memory); at least the input's window count.",
    )


def input_embeddings(model: nn.Module) -> nn.Module:
    """The token embedding layer, also inside a mean-pooling head's backbone."""
    inner = getattr(model, "backbone", model)
    return inner.get_input_embeddings()


class Explainer:
    def __init__(self, model: nn.Module, task, tokenizer: Any, max_length: int, settings: ExplainSettings):
        require("captum", "explain", "token attributions")
        self.model, self.task, self.tokenizer = model.eval(), task, tokenizer
        self.max_length, self.settings = max_length, settings
        self.baseline_id = self._baseline_id()

    def _baseline_id(self) -> int:
        name = self.settings.baseline
        token_id = getattr(self.tokenizer, f"{name}_token_id", None)
        if token_id is None:
            raise ConfigError(f"explain.baseline: the tokenizer has no {name} token; choose another of pad, mask, unk")
        return token_id

    def explain(self, record: Record) -> dict[str, Any]:
        """Every explained output of one record (the predicted label; each predicted entity), with word scores."""
        inputs = self.task.explanation_inputs(self.tokenizer, record, self.max_length)
        batch = self.task.model_inputs(self.task.collate(inputs.items, self.tokenizer.pad_token_id))
        with torch.no_grad():
            output = self.task.logits(self.model(**batch)).float()
        targets = self.task.explanation_targets(output, inputs, record, self.settings.target)
        return {"line": record.line, "explanations": [self._attribute(batch, inputs, t) for t in targets]}

    def _attribute(self, batch: dict[str, torch.Tensor], inputs: ExplanationInputs,
                   target: ExplanationTarget) -> dict[str, Any]:
        from captum.attr import LayerIntegratedGradients

        ids = batch["input_ids"]
        is_text = torch.zeros_like(ids, dtype=torch.bool)
        for row, words in enumerate(inputs.word_of):
            is_text[row, : len(words)] = torch.tensor([w is not None for w in words])
        baseline = torch.where(is_text, torch.full_like(ids, self.baseline_id), ids)
        extra = {k: v for k, v in batch.items() if k != "input_ids"}

        def forward(input_ids, *rest):
            out = self.task.logits(self.model(input_ids=input_ids, **dict(zip(extra, rest, strict=True)))).float()
            # Captum runs whole copies of the record's items, one per integration step: select on each copy.
            return torch.cat([target.select(copy) for copy in out.split(len(inputs.items))])

        integrated = LayerIntegratedGradients(forward, input_embeddings(self.model))
        attributions, delta = integrated.attribute(
            ids, baselines=baseline, additional_forward_args=tuple(extra.values()), n_steps=self.settings.steps,
            # at least one whole copy of the record's items per forward pass (Captum steps through whole copies)
            internal_batch_size=max(self.settings.internal_batch_size, len(inputs.items)),
            return_convergence_delta=True)
        scores = attributions.sum(dim=-1).detach()
        totals = [0.0] * len(inputs.words)
        for row, words in enumerate(inputs.word_of):
            for column, word in enumerate(words):
                if word is not None:
                    totals[word] += float(scores[row, column])
        with torch.no_grad():
            at_input, at_baseline = forward(ids, *extra.values()), forward(baseline, *extra.values())
        return {"target": target.name, "output": float(at_input.sum()), "baseline_output": float(at_baseline.sum()),
                "delta": float(delta.detach().abs().sum()), "windows": len(inputs.items),
                "words": [{"word": w.text, "start": w.start, "end": w.end, "side": w.side, "score": round(t, 6)}
                          for w, t in zip(inputs.words, totals, strict=True)]}


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
