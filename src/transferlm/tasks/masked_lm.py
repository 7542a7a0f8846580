"""Masked language modelling: continue an encoder's pretraining on the user's unlabelled text.

This is the encoder half of domain-adaptive pretraining (Gururangan et al., 2020, "Don't Stop Pretraining");
`transferlm adapt` runs it for BERT-family models (and causal-lm for decoders), and its run directory is a
plain Hugging Face model that ``train --model`` fine-tunes.

- Text: documents (``data.documents``) are tokenised, joined by the separator token and cut into blocks of
  ``model.max_length`` (the classifier token and a separator around each), so no token is dropped.
- Masking as in BERT (Devlin et al., 2019, section 3.1): ``task.mlm_probability`` (15 %) of a block's tokens
  are predicted; of those 80 % are replaced by the mask token, 10 % by a random token, 10 % kept. The number
  predicted per block is fixed, round(15 % of its tokens), as in the original ``create_pretraining_data``,
  so the loss normalises exactly over accumulation and processes. ``task.whole_word_mask`` picks whole words
  (every subword piece of a chosen word) until that number is reached, as Google's whole-word-masking
  release of BERT did.
- Training masks afresh for every batch (dynamic masking, Liu et al., 2019, RoBERTa); validation and test
  use one mask per block fixed at encoding, so their loss is comparable between evaluations and runs.

Metrics over the predicted tokens: ``loss`` (mean negative log-likelihood), ``perplexity`` = exp(loss),
and ``accuracy`` (the original token ranked first).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from transferlm.config.selected import TaskSettings
from transferlm.data.lm import Documents, read_documents
from transferlm.data.records import Record
from transferlm.errors import ConfigError, ModelSpecError
from transferlm.tasks.base import (
    IGNORE,
    Features,
    LossTerms,
    TextObjectiveTask,
    pad_inputs,
    pad_sequences,
    register_task,
)

log = logging.getLogger(__name__)
SPECIAL = -1  # word key of special tokens: never masked
NOT_A_PREDICTOR = ConfigError("a masked-lm run is an adapted model, not a predictor; fine-tune it for a task with "
                              "`transferlm train --model RUN_DIR`")


def check_masked_lm(path: Path) -> None:
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    config = AutoConfig.from_pretrained(path)
    if config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        raise ModelSpecError(
            f"{path}: a {config.model_type} model has no masked-language-model form; masked-lm is for encoders of "
            "the BERT family. To adapt a GPT-style decoder use task.type causal-lm (`transferlm adapt` picks it "
            "for decoders)"
        )


def mask_block(
    ids: Sequence[int],
    words: Sequence[int],
    rng: np.random.Generator,
    probability: float,
    whole_word: bool,
    mask_id: int,
    vocab_size: int,
) -> tuple[list[int], list[int]]:
    """One block's masked input ids and labels (the original id where a token is predicted, IGNORE elsewhere).

    ``words`` gives each token's word key (SPECIAL for special tokens); the number predicted is
    ``target_count(words, probability)``; with whole words, fewer when they cannot add up to it exactly (more
    only when the first word chosen is already longer)."""
    wanted = target_count(words, probability)
    candidates = [i for i, w in enumerate(words) if w != SPECIAL]
    if whole_word:
        groups: dict[int, list[int]] = {}
        for i in candidates:
            groups.setdefault(words[i], []).append(i)
        chosen: list[int] = []
        for key in rng.permutation(list(groups)):
            group = groups[int(key)]
            if len(chosen) + len(group) <= wanted or not chosen:  # (the first word always: a block of long
                chosen += group                                   # words still predicts something)
            if len(chosen) >= wanted:
                break
    else:
        chosen = [candidates[i] for i in rng.permutation(len(candidates))[:wanted]]
    masked, labels = list(ids), [IGNORE] * len(ids)
    for i in chosen:
        labels[i] = ids[i]
        draw = rng.random()
        if draw < 0.8:
            masked[i] = mask_id
        elif draw < 0.9:
            masked[i] = int(rng.integers(vocab_size))
    return masked, labels


def _output_layer(model: nn.Module) -> nn.Module | None:
    """The layer that maps hidden states to vocabulary logits (through DDP and PEFT wrappers), or None."""
    inner = getattr(model, "module", model)  # DistributedDataParallel
    layer = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    return layer if isinstance(layer, nn.Module) else None


def _predicted_logits(logits: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """Logits at the predicted positions, (predicted tokens, vocabulary) in batch order, from either the sparse
    output (already that) or a full (batch, length, vocabulary) one."""
    return logits[predicted] if logits.dim() == 3 else logits


def target_count(words: Sequence[int], probability: float) -> int:
    """How many tokens of a block are predicted: round(probability * maskable tokens), at least one."""
    maskable = sum(1 for w in words if w != SPECIAL)
    return max(1, round(probability * maskable)) if maskable else 0


class MaskedLmSettings(Documents, TaskSettings):
    type: Literal["masked-lm"] = "masked-lm"
    mlm_probability: float = Field(
        0.15, gt=0, lt=1,
        description="Share of tokens predicted per block (of those, 80% become the mask token, 10% a random token, "
        "10% stay).",
    )
    whole_word_mask: bool = Field(False, description="Choose whole words to mask (all their subword pieces together).")


class MaskedLmTask(TextObjectiveTask):
    name = "masked-lm"
    pipeline_tag = "fill-mask"
    settings = MaskedLmSettings
    auto_model = "AutoModelForMaskedLM"
    target_keys = ("labels", "units")
    empty_split = "no text"
    # The objective is the model's own pretraining one: nothing new to train alone (frozen is refused). A
    # checkpoint saved without its masked-LM head (sentence-embedding models such as minilm) gets a new one,
    # reported and listed by head_parameter_names.

    def __init__(self, task, data):
        super().__init__(task, data)
        self.new_head: set[str] = set()
        self._mask_id: int | None = None  # the tokenizer's, learned in encode for training_collate
        self._vocab = 0
        self._warned_full = False

    # --- model ---
    def build_model(self, path: Path, tokenizer: Any, pretrained: bool = True) -> nn.Module:
        from transformers import AutoConfig, AutoModelForMaskedLM

        check_masked_lm(path)
        if tokenizer.mask_token_id is None:
            raise ConfigError(f"{path}: the tokenizer has no mask token, so masked-lm cannot hide tokens from it")
        if not pretrained:
            return AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(path))
        model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)
        names = {name for name, _ in model.named_parameters()}
        self.new_head = {key for key in info["missing_keys"] if key in names}
        if self.new_head:
            log.warning("%s has no masked-LM head (%d tensors missing, e.g. %s); adaptation starts with a new, "
                        "randomly initialised one", path, len(self.new_head), sorted(self.new_head)[0])
        return model

    def head_parameter_names(self, model: nn.Module) -> set[str]:
        """A new masked-LM head's own layers (its transform: dense and norm), which LoRA trains in full. Left out:
        the output projection and its bias, which sit on the decoder tied to the word embeddings (LoRA must not
        copy it); the bias starts at zero and trains under full, last-n and bitfit."""
        output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        tied = {id(p) for p in output.parameters()} if output is not None else set()
        return {name for name, param in model.named_parameters()  # (endswith: peft-wrapped names have a prefix)
                if id(param) not in tied and any(name.endswith(new) for new in self.new_head)}

    # --- data ---
    def read_records(self, path: Path, need_label: bool = True) -> tuple[list[Record], list[str]]:
        return read_documents(path, self.data_config, self.task_config)

    def predictions(self, outputs, features: Features, records: Sequence[Record]) -> list[dict[str, Any]]:
        raise NOT_A_PREDICTOR

    def input_record(self, item: Any, index: int) -> Record:
        raise NOT_A_PREDICTOR

    # --- features ---
    def encode(self, tokenizer, records: Sequence[Record], max_length: int, with_labels: bool = True) -> Features:
        for needed in ("cls_token_id", "sep_token_id", "mask_token_id"):
            if getattr(tokenizer, needed) is None:
                raise ConfigError(f"the tokenizer has no {needed[:-3]}, which masked-lm blocks need")
        encoded = tokenizer([r.text for r in records], add_special_tokens=False)
        whole_word = self.task_config.whole_word_mask
        if whole_word and not getattr(tokenizer, "is_fast", False):
            raise ConfigError("task.whole_word_mask needs a fast (Rust) tokenizer, which knows each token's word; "
                              "this model's is a slow one: turn whole_word_mask off")
        ids: list[int] = []
        words: list[int] = []  # a key per token: its word (whole-word masking) or itself
        next_key = 0
        for i in range(len(records)):
            tokens = encoded["input_ids"][i]
            word_ids = encoded.word_ids(i) if whole_word else range(len(tokens))
            keys, seen = [], {}
            for w in word_ids:
                if w is None:  # a token outside any word stands alone
                    keys.append(next_key)
                    next_key += 1
                    continue
                if w not in seen:
                    seen[w] = next_key
                    next_key += 1
                keys.append(seen[w])
            ids += tokens + [tokenizer.sep_token_id]
            words += keys + [SPECIAL]
        ids, words = ids[:-1], words[:-1]  # the last separator is the block's own
        body = max_length - 2
        items = []
        for number, start in enumerate(range(0, len(ids), body)):
            block = [tokenizer.cls_token_id, *ids[start:start + body], tokenizer.sep_token_id]
            keys = [SPECIAL, *words[start:start + body], SPECIAL]
            masked, labels = mask_block(block, keys, np.random.default_rng(number), self.task_config.mlm_probability,
                                        self.task_config.whole_word_mask, tokenizer.mask_token_id, len(tokenizer))
            items.append({"input_ids": block, "words": keys, "block": number, "masked_ids": masked, "labels": labels,
                          "units": target_count(keys, self.task_config.mlm_probability)})
        self._mask_id, self._vocab = tokenizer.mask_token_id, len(tokenizer)
        return Features(items, [len(item["input_ids"]) for item in items])

    def training_collate(self, items: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        """A fresh mask per block and batch, seeded by a draw from torch's seeded generator and the block's number,
        so processes of a distributed run mask their different blocks differently, and a run is reproducible."""
        if self._mask_id is None:
            raise RuntimeError("masked-lm: encode() the training data before collating it")
        draw = int(torch.randint(2**62, ()))  # the same on every process: each block adds its own number
        remasked = []
        for item in items:
            rng = np.random.default_rng([draw, item["block"]])
            masked, labels = mask_block(item["input_ids"], item["words"], rng, self.task_config.mlm_probability,
                                        self.task_config.whole_word_mask, self._mask_id, self._vocab)
            remasked.append({**item, "masked_ids": masked, "labels": labels})
        return self.collate(remasked, pad_id)

    def collate(self, items: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        batch = pad_inputs([{"input_ids": item["masked_ids"]} for item in items], pad_id)
        batch.update(self.collate_targets(items))
        return batch

    def collate_targets(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        labels = pad_sequences([item["labels"] for item in items], IGNORE)
        return {"labels": labels, "units": torch.tensor([item["units"] for item in items], dtype=torch.float32)}

    def loss_units(self, items: Sequence[dict[str, Any]]) -> int:
        return sum(item["units"] for item in items)

    def forward(self, module: nn.Module, batch: dict[str, torch.Tensor]) -> Any:
        """The model's outputs with vocabulary logits only where a token is predicted: (predicted tokens, vocabulary),
        in batch order. The output layer (384 x 30,522 in MiniLM) is most of an encoder's arithmetic per position,
        and 85 % of positions predict nothing; full logits of a 32 x 128 batch are 0.5 GB, twice over with their
        gradient. A model whose output layer does not see (batch, length, hidden) states once per call (unpadded
        or chunked heads) gets every position's logits, which ``loss`` and ``output_rows`` also take; logged."""
        output_layer = _output_layer(module)
        if output_layer is None:
            self._full_logits_once(f"{type(module).__name__} has no output embedding layer")
            return module(**self.model_inputs(batch))
        predicted = batch["labels"] != IGNORE
        gathered = []

        def only_predicted(_, args):
            states = args[0]
            if gathered or states.dim() != 3 or states.shape[:2] != predicted.shape:
                self._full_logits_once(f"its output layer sees states of shape {tuple(states.shape)}")
                gathered.append(False)
                return None  # unchanged
            gathered.append(True)
            return (states[predicted], *args[1:])

        handle = output_layer.register_forward_pre_hook(only_predicted)
        try:
            outputs = module(**self.model_inputs(batch))
        finally:
            handle.remove()
        if gathered == [True]:
            return outputs
        if not gathered:
            self._full_logits_once("its output layer is not called as a module")
            return outputs
        return module(**self.model_inputs(batch))  # called more than once: partly gathered, so again, plainly

    def _full_logits_once(self, why: str) -> None:
        if not self._warned_full:
            self._warned_full = True
            log.warning("masked-lm: every position's vocabulary logits are computed (%s), not only the predicted "
                        "ones: slower and more memory, same result", why)

    def loss(self, outputs, batch) -> LossTerms:
        """Summed NLL of the predicted tokens; a block whose whole words fell short of its count is scaled up to
        it, so every block weighs its ``units`` and the loop's normalisation is exact."""
        labels = batch["labels"]
        predicted = labels != IGNORE
        logits = _predicted_logits(outputs.logits, predicted).float()
        nll = F.cross_entropy(logits, labels[predicted], reduction="none")
        per_block = torch.zeros(len(labels), device=nll.device).index_add_(0, predicted.nonzero()[:, 0], nll)
        total = (per_block * batch["units"] / predicted.sum(dim=1).clamp(min=1)).sum()
        return LossTerms(total, int(batch["units"].sum()))

    def output_rows(self, output: torch.Tensor, items: Sequence[dict[str, Any]]) -> list[torch.Tensor]:
        """Per block: (summed NLL, predicted tokens, correctly ranked first) under its fixed mask."""
        labels = pad_sequences([item["labels"] for item in items], IGNORE).to(output.device)
        predicted = labels != IGNORE
        scores = _predicted_logits(output, predicted).float()
        targets = labels[predicted]
        nll = F.cross_entropy(scores, targets, reduction="none") if len(targets) else scores.new_zeros(0)
        correct = (scores.argmax(dim=-1) == targets).float() if len(targets) else scores.new_zeros(0)
        counts = predicted.sum(dim=1).tolist()
        return [torch.tensor([float(a.sum()), float(n), float(c.sum())], dtype=torch.float64)
                for a, c, n in zip(nll.split(counts), correct.split(counts), counts, strict=True)]

    def metrics(self, outputs: Sequence[torch.Tensor], features: Features) -> dict[str, Any]:
        total = sum(float(row[0]) for row in outputs)
        tokens = int(sum(float(row[1]) for row in outputs))
        correct = sum(float(row[2]) for row in outputs)
        loss = total / tokens if tokens else float("nan")
        return {"loss": loss, "perplexity": math.exp(loss) if tokens else float("nan"),
                "accuracy": correct / tokens if tokens else float("nan"), "tokens": tokens, "n": len(outputs)}


register_task(MaskedLmTask)
