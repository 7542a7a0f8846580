"""Text generation from a causal LM: greedy or sampled, with stop strings, streamed as it is produced.

``Generator`` wraps any Hugging Face causal LM and its tokenizer: a fine-tuned ``causal-lm`` run
(``transferlm.load(run).generate(...)``), or a model given by name or directory
(``transferlm.generation.Generator.from_model("smollm2")``, which reads run directories and so lives above
``runs``). A prompt is a string (``chat=True`` wraps it as one user turn and renders it with the tokenizer's chat
template) or a chat, a list of ``{"role", "content"}`` turns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Optional

import torch
from pydantic import Field, field_validator

from transferlm.config.selected import CommandSettings
from transferlm.data.lm import Turn, parse_turns
from transferlm.data.records import Record
from transferlm.errors import DataError

log = logging.getLogger(__name__)


class GenerationSettings(CommandSettings):
    section = "generate"
    max_new_tokens: int = Field(128, ge=1, description="Tokens generated at most per prompt.")
    temperature: float = Field(0.0, ge=0, description="0: greedy (deterministic); > 0: sampling at this temperature.")
    top_p: float = Field(
        1.0, gt=0, le=1, description="Nucleus sampling (with temperature): the smallest set of tokens with this "
        "much probability.",
    )
    stop: tuple[str, ...] = Field(
        (), description="Generation ends at the first of these strings, which is not included (repeat the flag for "
        "several).",
    )
    seed: Optional[int] = Field(None, description="Sampling seed, for repeatable samples.")

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not s for s in value):
            raise ValueError("stop strings must not be empty")
        return value


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """The text before the first stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def _held_back(text: str, stop: Sequence[str]) -> int:
    """How many trailing characters could be the start of a stop string (not streamed yet)."""
    held = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                held = max(held, k)
                break
    return held


def _stop_criteria(tokenizer, prompt_length: int, stop: Sequence[str]):
    """Stops when the decoded continuation contains a stop string. Decoding (rather than matching token
    strings, as transformers' ``stop_strings`` does) works with any tokenizer."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopStrings(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
            done = [cut_at_stop(tokenizer.decode(row[prompt_length:], skip_special_tokens=True), stop)[1]
                    for row in input_ids.tolist()]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopStrings()])


class _Stream:
    """A transformers streamer: decodes the new tokens so far and hands over only text that is final."""

    def __init__(self, tokenizer, stop: Sequence[str], on_text: Callable[[str], None] | None):
        self.tokenizer, self.stop, self.on_text = tokenizer, stop, on_text
        self.ids: list[int] = []
        self.sent = 0
        self.prompt_seen = False
        self.stopped = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt
            self.prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        self._emit(final=False)

    def end(self) -> None:
        self._emit(final=True)

    def text(self) -> str:
        return cut_at_stop(self.tokenizer.decode(self.ids, skip_special_tokens=True), self.stop)[0]

    def _emit(self, final: bool) -> None:
        text, found = cut_at_stop(self.tokenizer.decode(self.ids, skip_special_tokens=True), self.stop)
        self.stopped = self.stopped or found
        ready = len(text) if final or found else len(text) - _held_back(text, self.stop)
        if text.endswith("\ufffd") and not final:  # half a multi-byte character: wait for the rest
            ready = min(ready, len(text) - 1)
        if ready > self.sent and self.on_text is not None:
            self.on_text(text[self.sent:ready])
        self.sent = max(self.sent, ready)


class Generator:
    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model.eval(), tokenizer

    def prompt_ids(self, prompt: str | Sequence[dict] | Record, chat: bool = False) -> list[int]:
        from transferlm.tasks.causal_lm import prompt_ids

        if isinstance(prompt, Record):
            record = prompt
        elif isinstance(prompt, str):
            record = Record("", None, (Turn("user", prompt),), 0) if chat else Record(prompt, None, None, 0)
        else:
            turns = parse_turns(list(prompt))
            if not turns:
                raise DataError("a chat prompt must be a list of {'role': str, 'content': str} turns")
            record = Record("", None, tuple(turns), 0)
        return prompt_ids(self.tokenizer, record)

    @torch.no_grad()
    def generate(self, prompts: Sequence[Any], settings: GenerationSettings | None = None, chat: bool = False,
                 on_text: Callable[[int, str], None] | None = None) -> list[dict[str, Any]]:
        """One result per prompt: ``text`` (the continuation), ``tokens`` (new tokens) and ``finish_reason``
        (``stop``: a stop string, ``eos``: the end-of-sequence token, ``length``: max_new_tokens).
        ``on_text(i, piece)`` receives prompt i's text as it is generated."""
        settings = settings or GenerationSettings()
        results = []
        for i, prompt in enumerate(prompts):
            ids = self.prompt_ids(prompt, chat)
            stream = _Stream(self.tokenizer, settings.stop,
                             None if on_text is None else (lambda piece, i=i: on_text(i, piece)))
            new_tokens = settings.max_new_tokens
            limit = getattr(self.model.config, "max_position_embeddings", None)
            if limit is not None and len(ids) + new_tokens > limit:
                if len(ids) >= limit:
                    raise DataError(f"prompt {i + 1}: {len(ids)} tokens, and the model takes at most {limit} "
                                    "positions; shorten it")
                new_tokens = limit - len(ids)
                log.warning("prompt %d: %d tokens + max_new_tokens %d exceed the model's %d positions; generating "
                            "at most %d", i + 1, len(ids), settings.max_new_tokens, limit, new_tokens)
            sampling = settings.temperature > 0
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            options: dict[str, Any] = dict(max_new_tokens=new_tokens, do_sample=sampling,
                                           pad_token_id=self.tokenizer.pad_token_id, streamer=stream)
            if sampling:
                options.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
            else:  # explicit: a checkpoint's generation_config may ask for sampling
                options.update(temperature=None, top_p=None, top_k=None)
            if settings.stop:
                options["stopping_criteria"] = _stop_criteria(self.tokenizer, len(ids), settings.stop)
            input_ids = torch.tensor([ids], device=self.model.device)
            output = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **options)
            new = output[0, len(ids):].tolist()
            eos = self.tokenizer.eos_token_id
            reason = "stop" if stream.stopped else "eos" if eos is not None and eos in new else "length"
            results.append({"text": stream.text(), "tokens": len(new), "finish_reason": reason})
        return results
