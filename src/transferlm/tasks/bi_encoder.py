"""A bi-encoder for text pairs: each text embedded on its own, the output read off the two embeddings' cosine.

A cross-encoder reads both texts in one input and learns a new head; a bi-encoder keeps what a sentence-embedding
checkpoint was trained for. all-MiniLM-L6-v2's cosine with no training scores 82.03 test Spearman on STS-B, above
the same model fine-tuned as a cross-encoder on 1,000 pairs (75.75; bench/README.md). Fine-tuned as a bi-encoder
it starts from that cosine: the output is ``scale * cosine + bias``, two parameters (the head), initialised so that
a cosine from 0 to 1 spans the training targets' range, as Sentence-BERT's cosine objective trains it (Reimers and
Gurevych, 2019, "Sentence-BERT", EMNLP).

A batch carries the first texts as ``input_ids``/``attention_mask`` (and ``token_type_ids``) and the second texts
under the same names with the ``pair_`` prefix. Saved as a plain backbone directory plus ``head.safetensors`` (the
scale and bias), whose metadata names the kind of head.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from transferlm.data.records import Record
from transferlm.errors import ConfigError
from transferlm.models.embed import mean_pooled
from transferlm.tasks.base import Features, pad_inputs
from transferlm.tasks.heads import FeatureHead
from transferlm.tasks.long_inputs import Cut, Template, side_pieces, take, text_ids
from transferlm.tasks.pooling import HEAD_FILE, backbone_from

PAIR = "pair_"  # the prefix of the second text's inputs in a batch
KIND = "bi-encoder"  # head.safetensors metadata: what the file holds


class BiEncoderRegressor(nn.Module):
    base_model_prefix = "backbone"

    def __init__(self, backbone: nn.Module, scale: float = 1.0, bias: float = 0.0):
        super().__init__()
        self.backbone = backbone
        if getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None  # unused: it would get no gradient, which DDP rejects
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.bias = nn.Parameter(torch.tensor(float(bias)))

    @property
    def config(self):
        return self.backbone.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pair_input_ids: torch.Tensor,
                pair_attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                pair_token_type_ids: torch.Tensor | None = None) -> SequenceClassifierOutput:
        return self.head(self.embeddings(input_ids, attention_mask, pair_input_ids, pair_attention_mask,
                                         token_type_ids, pair_token_type_ids))

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """One text's sentence embedding: the mean of the backbone's token states."""
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        return mean_pooled(hidden, attention_mask)

    def embeddings(self, input_ids, attention_mask, pair_input_ids, pair_attention_mask, token_type_ids=None,
                   pair_token_type_ids=None) -> torch.Tensor:
        """Both texts' embeddings, stacked: (batch, 2, hidden)."""
        return torch.stack([self.embed(input_ids, attention_mask, token_type_ids),
                            self.embed(pair_input_ids, pair_attention_mask, pair_token_type_ids)], dim=1)

    def head(self, embeddings: torch.Tensor) -> SequenceClassifierOutput:
        cosine = F.cosine_similarity(embeddings[:, 0].float(), embeddings[:, 1].float(), dim=-1)
        return SequenceClassifierOutput(logits=(self.scale * cosine + self.bias).unsqueeze(-1))

    def feature_head(self) -> FeatureHead:
        """The head over fixed embeddings (a frozen backbone's are computed once)."""
        return FeatureHead(self, self.embeddings, self.head)

    @classmethod
    def from_backbone(cls, path: Path, pretrained: bool = True, scale: float = 1.0,
                      bias: float = 0.0) -> BiEncoderRegressor:
        return cls(backbone_from(path, pretrained), scale, bias)

    def save(self, root: Path) -> None:
        self.backbone.save_pretrained(root)
        save_file({"scale": self.scale.detach().reshape(1), "bias": self.bias.detach().reshape(1)},
                  str(root / HEAD_FILE), metadata={"kind": KIND})

    @classmethod
    def load(cls, root: Path) -> BiEncoderRegressor:
        with safe_open(str(root / HEAD_FILE), "pt") as f:
            if (f.metadata() or {}).get("kind") != KIND:
                raise ConfigError(f"{root / HEAD_FILE}: not a bi-encoder's head (task.pair_encoding: bi); the run "
                                  "was trained with another task.pair_encoding or task.pooling")
            scale, bias = (float(f.get_tensor(name)[0]) for name in ("scale", "bias"))
        return cls(backbone_from(root, without_pooler=True), scale, bias)


def encode_pairs(tokenizer, records: Sequence[Record], max_length: int, long_inputs: str,
                 targets: list[float] | None) -> Features:
    """One item per record: each text with its own special tokens, cut to ``max_length`` by ``long_inputs``
    (truncate or head-tail, side by side: a bi-encoder reads each text in one pass). ``targets``: one per record,
    or None (unlabelled)."""
    template = Template.probe(tokenizer)
    room = max_length - template.added(False)
    sides = [text_ids(tokenizer, [r.text for r in records]),
             text_ids(tokenizer, [r.text_pair or "" for r in records])]
    items, lengths, cuts = [], [], {}
    for n in range(len(records)):
        item: dict[str, Any] = {"example": n, "weight": 1.0}
        lost = []
        for prefix, ids in zip(("", PAIR), (sides[0][n], sides[1][n]), strict=True):
            (pieces,) = side_pieces(len(ids), room, long_inputs, None)
            kept = take(ids, pieces)
            item.update({prefix + key: value for key, value in template.build(kept, None).items()})
            lost.append(len(ids) - len(kept))
        if any(lost):
            side = "both" if all(lost) else "text" if lost[0] else "text_pair"
            total = len(sides[0][n]) + len(sides[1][n])
            cuts[n] = Cut(total, total - sum(lost), side)
        if targets is not None:
            item["labels"] = targets[n]
        items.append(item)
        lengths.append(len(item["input_ids"]) + len(item[PAIR + "input_ids"]))
    return Features(items, lengths, cuts=cuts)


def pair_lengths(tokenizer, records: Sequence[Record]) -> list[int]:
    """The longer text's length in tokens, special tokens included: what must fit ``model.max_length``."""
    added = Template.probe(tokenizer).added(False)
    first = text_ids(tokenizer, [r.text for r in records])
    second = text_ids(tokenizer, [r.text_pair or "" for r in records])
    return [max(len(a), len(b)) + added for a, b in zip(first, second, strict=True)]


def collate_pairs(items: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Both texts' padded inputs (the second's names prefixed with ``pair_``)."""
    batch = pad_inputs(items, pad_id)
    second = pad_inputs([{key[len(PAIR):]: value for key, value in item.items() if key.startswith(PAIR)}
                         for item in items], pad_id)
    batch.update({PAIR + key: value for key, value in second.items()})
    return batch

