"""Causal language modelling: fine-tune a GPT-style decoder on text, chats or prompt/completion pairs.

- Plain text: each document is tokenised, followed by the end-of-sequence token, and the stream is cut
  into blocks of ``model.max_length`` tokens; the last block is shorter, so no token is dropped.
- Chats (``messages``): rendered by the tokenizer's own chat template; the loss covers the assistant turns
  only (their content and the end-of-turn marker the template writes after it), found from the template's
  renderings of each prefix of the conversation and the tokens' character offsets.
- Prompt/completion pairs: prompt tokens, then completion tokens and end-of-sequence; the loss covers the
  completion and the end-of-sequence token.

The model is the checkpoint's own ``AutoModelForCausalLM``; there is no new head. Metrics: the mean
negative log-likelihood per predicted token (``loss``) and ``perplexity`` = exp(loss), over every target
token of the split. ``predict`` generates (``transferlm.generation``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from transferlm.config.selected import TaskSettings
from transferlm.data.lm import ROLES, LmColumns, Turn, is_chat, is_prompt_completion, parse_turns, read_lm_records
from transferlm.data.records import Record
from transferlm.errors import ConfigError, DataError, ModelSpecError
from transferlm.tasks.base import IGNORE, Features, LossTerms, TextObjectiveTask, register_task

# Encoder families: their checkpoints have no causal language-model head to fine-tune.
ENCODER_TYPES = {"bert", "roberta", "distilbert", "electra", "xlm-roberta", "albert", "deberta", "deberta-v2",
                 "mpnet", "camembert", "modernbert"}


def check_decoder(path: Path) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    if config.model_type in ENCODER_TYPES or getattr(config, "is_encoder_decoder", False):
        raise ModelSpecError(
            f"{path}: a {config.model_type} model is not a GPT-style decoder, and causal-lm needs one (e.g. "
            "--model smollm2 or any Hugging Face causal LM); to adapt an encoder to a domain use `transferlm adapt`, "
            "which trains it as a masked language model"
        )


def assistant_spans(tokenizer: Any, turns: Sequence[Turn]) -> tuple[str, list[tuple[int, int]]]:
    """The chat rendered by the tokenizer's template, and the character spans of the assistant turns."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "this model's tokenizer has no chat template, so chat (messages) data cannot be rendered; use a chat "
            "model (e.g. smollm2), or prompt/completion pairs"
        )
    messages = [{"role": t.role, "content": t.content} for t in turns]
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, turn in enumerate(turns):
        if turn.role != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True) if i else ""
        through = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (full.startswith(through) and through.startswith(before)):
            raise ConfigError(
                "this model's chat template renders a conversation differently from its beginnings (it rewrites "
                "earlier turns), so the assistant turns cannot be located for the loss; use prompt/completion pairs"
            )
        spans.append((len(before), len(through)))
    return full, spans


def chat_features(tokenizer: Any, turns: Sequence[Turn]) -> tuple[list[int], list[int]]:
    """Token ids of a rendered chat, and labels: the ids on assistant tokens, IGNORE elsewhere."""
    text, spans = assistant_spans(tokenizer, turns)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, labels = encoded["input_ids"], []
    for token, (start, end) in zip(ids, encoded["offset_mapping"], strict=True):
        inside = end > start and any(s <= start < e for s, e in spans)
        labels.append(token if inside else IGNORE)
    return ids, labels


def prompt_ids(tokenizer: Any, record: Record) -> list[int]:
    """What generation continues from: the rendered chat up to the assistant's turn, or the prompt text."""
    if is_chat(record):
        turns = list(record.label)
        if turns and turns[-1].role == "assistant":  # predicting a conversation: answer its last user turn
            turns = turns[:-1]
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError("this model's tokenizer has no chat template; pass plain prompts instead of chats")
        messages = [{"role": t.role, "content": t.content} for t in turns]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(record.text, add_special_tokens=False)["input_ids"]


class CausalLmSettings(LmColumns, TaskSettings):
    type: Literal["causal-lm"] = "causal-lm"


class CausalLmTask(TextObjectiveTask):
    name = "causal-lm"
    pipeline_tag = "text-generation"
    settings = CausalLmSettings
    auto_model = "AutoModelForCausalLM"
    generates = True
    # Evaluation keeps every position's vocabulary logits of a pass: 16,384 tokens of SmolLM2's 49,152 would be
    # 3.2 GB (more than training needs); 2,048 are 0.4 GB, and as fast per token.
    inference_batch_tokens = 2_048

    # --- model ---
    def build_model(self, path: Path, tokenizer: Any, pretrained: bool = True) -> nn.Module:
        check_decoder(path)
        return super().build_model(path, tokenizer, pretrained)

    def head_parameter_names(self, model: nn.Module) -> set[str]:
        return set()  # the language-model head is pretrained (and usually tied to the embeddings)

    # --- data ---
    def read_records(self, path: Path, need_label: bool = True) -> tuple[list[Record], list[str]]:
        return read_lm_records(path, self.data_config, self.task_config)

    def input_record(self, item: Any, index: int) -> Record:
        """A prompt string, ``{"prompt": ...}``, or a chat as ``{"messages": [...]}`` / a list of turns."""
        if isinstance(item, str):
            return Record(item, None, None, index)
        messages = item.get(self.task_config.messages_column, item.get("messages")) if isinstance(item, dict) else item
        if isinstance(item, dict) and messages is None:
            prompt = item.get(self.task_config.prompt_column, item.get("prompt"))
            if not isinstance(prompt, str):
                raise DataError(f"input {index}: a dict needs 'prompt' (a string) or 'messages' (a list of turns)")
            return Record(prompt, None, None, index)
        turns = parse_turns(messages)
        if not turns:
            raise DataError(f"input {index}: expected a prompt string or a chat [{{'role': ..., 'content': ...}}, ...]")
        unknown = sorted({t.role for t in turns} - set(ROLES))
        if unknown:
            named = ", ".join(map(repr, unknown))
            raise DataError(f"input {index}: unknown role {named}; roles are {', '.join(ROLES)}")
        return Record("", None, tuple(turns), index)

    def input_schema(self) -> dict[str, Any]:
        turn = {"type": "object", "required": ["role", "content"],
                "properties": {"role": {"enum": list(ROLES)}, "content": {"type": "string"}}}
        chat = {"type": "array", "items": turn, "minItems": 1}
        return {"anyOf": [{"type": "string"}, chat, {"type": "object", "required": ["prompt"],
                                                      "properties": {"prompt": {"type": "string"}}},
                          {"type": "object", "required": ["messages"], "properties": {"messages": chat}}]}

    def record_row(self, record: Record, with_label: bool = True) -> dict[str, Any]:
        if is_chat(record):
            return {"messages": [{"role": t.role, "content": t.content} for t in record.label]}
        if is_prompt_completion(record):
            return {"prompt": record.text, "completion": record.text_pair}
        return {"text": record.text}

    def read_back_keys(self) -> dict[str, Any]:
        return {"data.text_column": "text", "task.messages_column": "messages", "task.prompt_column": "prompt",
                "task.completion_column": "completion"}

    # --- features ---
    def encode(self, tokenizer, records: Sequence[Record], max_length: int, with_labels: bool = True) -> Features:
        if not with_labels:  # prompts to continue
            items = [{"input_ids": prompt_ids(tokenizer, r), "example": i} for i, r in enumerate(records)]
            return Features(items, [len(item["input_ids"]) for item in items])
        documents = [r for r in records if not is_chat(r) and not is_prompt_completion(r)]
        items = self._pack(tokenizer, documents, max_length) if documents else []
        problems = []
        if documents and len(items) == 1 and len(items[0]["input_ids"]) < max_length:
            problems.append(f"input: the text (lines {documents[0].line}-{documents[-1].line}) has "
                            f"{len(items[0]['input_ids'])} tokens, less than one block of model.max_length "
                            f"{max_length}; add text or lower model.max_length")
        too_long = []
        for i, record in enumerate(records):
            if is_chat(record):
                ids, labels = chat_features(tokenizer, record.label)
            elif is_prompt_completion(record):
                prompt = tokenizer(record.text, add_special_tokens=False)["input_ids"]
                completion = tokenizer(record.text_pair, add_special_tokens=False)["input_ids"]
                completion.append(tokenizer.eos_token_id)
                ids, labels = prompt + completion, [IGNORE] * len(prompt) + completion
            else:
                continue
            if len(ids) > max_length:
                too_long.append((record.line, len(ids)))
                ids, labels = ids[:max_length], labels[:max_length]
            items.append({"input_ids": ids, "labels": labels, "example": i})
        if too_long:
            shown = ", ".join(f"line {line} ({n} tokens)" for line, n in too_long[:5])
            more = f" and {len(too_long) - 5} more" if len(too_long) > 5 else ""
            problems.append(f"input: {len(too_long)} example(s) are longer than model.max_length {max_length}: "
                            f"{shown}{more}; raise model.max_length or shorten them (they are cut at the limit)")
        if not any(label != IGNORE for item in items for label in item["labels"][1:]):
            problems.append("input: no token to learn from (every example's target part is empty)")
        return Features(items, [len(item["input_ids"]) for item in items], tuple(problems))

    @staticmethod
    def _pack(tokenizer, documents: Sequence[Record], block: int) -> list[dict[str, Any]]:
        """Documents joined by end-of-sequence tokens, cut into blocks; every token lands in one block."""
        if tokenizer.eos_token_id is None:
            raise ConfigError("the tokenizer has no end-of-sequence token to join documents with; add one")
        stream: list[int] = []
        for ids in tokenizer([r.text for r in documents], add_special_tokens=False)["input_ids"]:
            stream.extend(ids)
            stream.append(tokenizer.eos_token_id)
        return [{"input_ids": stream[i:i + block], "labels": stream[i:i + block]} for i in range(0, len(stream), block)]

    def loss_units(self, items: Sequence[dict[str, Any]]) -> int:
        return sum(sum(1 for label in item["labels"][1:] if label != IGNORE) for item in items)

    def loss(self, outputs, batch) -> LossTerms:
        logits = outputs.logits[:, :-1].float()
        targets = batch["labels"][:, 1:]
        total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE,
                                reduction="sum")
        return LossTerms(total, int((targets != IGNORE).sum()))

    def output_rows(self, output: torch.Tensor, items: Sequence[dict[str, Any]]) -> list[torch.Tensor]:
        """Per item: (summed negative log-likelihood, number of target tokens); full logits are not kept."""
        rows = []
        for logits, item in zip(output, items, strict=True):
            labels = item.get("labels")
            if labels is None:
                rows.append(torch.zeros(2, dtype=torch.float64))
                continue
            n = len(labels)
            targets = torch.tensor(labels[1:n], device=logits.device)
            nll = F.cross_entropy(logits[: n - 1].float(), targets, ignore_index=IGNORE, reduction="sum")
            rows.append(torch.tensor([float(nll), float((targets != IGNORE).sum())], dtype=torch.float64))
        return rows

    # --- metrics and predictions ---
    def metrics(self, outputs: Sequence[torch.Tensor], features: Features) -> dict[str, Any]:
        total = sum(float(row[0]) for row in outputs)
        tokens = int(sum(float(row[1]) for row in outputs))
        loss = total / tokens if tokens else float("nan")
        return {"loss": loss, "perplexity": math.exp(loss) if tokens else float("nan"), "tokens": tokens,
                "n": len(outputs)}

    def predictions(self, outputs, features: Features, records: Sequence[Record]) -> list[dict[str, Any]]:
        raise NotImplementedError("causal-lm predictions are generated: Predictor.generate")


register_task(CausalLmTask)
