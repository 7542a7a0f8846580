"""`adapt`: domain-adaptive continued pretraining on unlabelled text (Gururangan et al., 2020).

It is `train` with the model's own pretraining objective: masked-lm for encoders, causal-lm for decoders,
chosen from the model's config unless ``task.type`` names one. Every strategy applies (``full`` by default;
``lora`` is merged into the weights on save). The run directory is a plain Hugging Face model directory
(weights, config, tokenizer), which ``transferlm train --model RUN_DIR`` takes like any other model.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from transferlm.config.load import build_config, set_dotted
from transferlm.config.schema import ModelConfig, RunConfig
from transferlm.errors import ConfigError, ModelSpecError

OBJECTIVES = ("masked-lm", "causal-lm")


def objective(path: Path) -> str:
    """masked-lm for a model with a masked-LM form (the BERT family), causal-lm for a causal LM."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = AutoConfig.from_pretrained(path).model_type
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:  # (before causal: BERT has a causal form too)
        return "masked-lm"
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal-lm"
    raise ModelSpecError(f"{path}: a {model_type} model has neither a masked- nor a causal-language-model form, "
                         "so adapt has no pretraining objective to continue")


def adapt_config(data: dict[str, Any], overrides: list[tuple[str, Any]] = ()) -> RunConfig:
    """The run config for adapt: ``data`` (a YAML's content) with ``overrides``, the objective filled in from
    the model when not given, and LoRA merged on save."""
    from transferlm.models.resolve import resolve_model

    given = copy.deepcopy(data)
    for key, value in overrides:
        set_dotted(given, key, value)
    # The objective first: the task's own settings (whole_word_mask, documents) validate only under it.
    task_type = (given.get("task") or {}).get("type")
    if task_type is None:
        model = (given.get("model") or {}).get("name") or ModelConfig.model_fields["name"].default
        set_dotted(given, "task.type", objective(resolve_model(model).path))
    elif task_type not in OBJECTIVES:
        raise ConfigError(f"task.type: adapt continues pretraining, so it is one of {', '.join(OBJECTIVES)} (or "
                          f"unset: chosen from the model), not {task_type!r}; `transferlm train` fine-tunes for it")
    if (given.get("strategy") or {}).get("name") == "lora":
        if given["strategy"].get("merge") is False:
            raise ConfigError("strategy.merge: adapt writes a plain model directory for `train --model`, so "
                              "the adapters are merged on save; remove merge: false")
        set_dotted(given, "strategy.merge", True)
    return build_config(given)
