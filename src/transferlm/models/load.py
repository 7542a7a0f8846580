"""Tokenizer loading, shared by training and prediction."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from transferlm.errors import ModelSpecError

log = logging.getLogger(__name__)


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Within the block, transformers shows no progress bars ("Loading weights") and no load reports (a new head's
    weights listed as "missing" is what adding a head means): the Python API's output in a notebook is transferlm's
    own. A user who turned transformers' logging up to info or debug keeps seeing everything; the settings are put
    back afterwards."""
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hub_bars = not hub_utils.are_progress_bars_disabled()
    if verbosity < logging.WARNING:
        yield
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    hub_utils.disable_progress_bars()  # saving shards ("Writing model shards") and downloads
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
        if hub_bars:
            hub_utils.enable_progress_bars()


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
