"""Tokenizer loading, shared by training and prediction."""

from __future__ import annotations

import logging
from pathlib import Path

from transferlm.errors import ModelSpecError

log = logging.getLogger(__name__)


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelSpecError(
            f"{path}: no usable tokenizer ({e}); the model directory needs tokenizer files "
            "(tokenizer.json or vocab files) saved next to config.json"
        ) from e
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelSpecError(f"{path}: tokenizer has neither a pad nor an end-of-sequence token; add a pad token")
        log.warning("tokenizer has no pad token; padding with its end-of-sequence token %r", tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
