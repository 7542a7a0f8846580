"""LoRA (Hu et al., 2021) through peft: low-rank adapters on chosen linear layers, plus the task head.

The head is new, so it trains and is saved inside the adapter (peft ``modules_to_save``); without that
a reloaded classifier would get a fresh random head. Saved either as the adapter alone (small; the
base model is resolved again when loading) or merged into a plain model (``strategy.merge``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field
from torch import nn

from transferlm.config.selected import flag
from transferlm.errors import ConfigError
from transferlm.strategies.base import Adapting, Strategy, register_strategy
from transferlm.tasks.base import Task

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"


@contextmanager
def _quiet_peft() -> Iterator[None]:
    with warnings.catch_warnings():
        # peft 0.21 reads transformers' deprecated is_gradient_checkpointing; nothing for users to act on.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _linear_names(model: nn.Module, prefix: str) -> list[str]:
    """Leaf names of the backbone's linear layers (GPT-2's Conv1D is one, transposed): what target_modules
    can name."""
    from transformers.pytorch_utils import Conv1D

    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, Conv1D)) and name.startswith(prefix)
        }
    )


def _targets_conv1d(model: nn.Module, prefix: str, targets: list[str]) -> bool:
    """Whether the targets are GPT-2-style Conv1D layers, which store their weight transposed."""
    from transformers.pytorch_utils import Conv1D

    return any(
        isinstance(m, Conv1D) for name, m in model.named_modules()
        if name.startswith(prefix) and name.rsplit(".", 1)[-1] in targets
    )


def default_targets(model: nn.Module) -> list[str] | None:
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
    return list(targets) if targets else None


def head_modules(head: set[str]) -> list[str]:
    """Modules that own the head's parameters (e.g. classifier, bert.pooler.dense)."""
    return sorted({name.rsplit(".", 1)[0] for name in head})


class LoraSettings(Adapting):
    name: Literal["lora"] = "lora"
    r: int = Field(8, gt=0, description="LoRA rank.", json_schema_extra=flag("--lora-r"))
    alpha: float = Field(16, gt=0, description="LoRA scaling numerator: updates are scaled by alpha / r.",
                         json_schema_extra=flag("--lora-alpha"))
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the LoRA branch input.",
                           json_schema_extra=flag("--lora-dropout"))
    target_modules: Optional[list[str]] = Field(
        None,
        description="Module names that get adapters (on the command line, repeat the flag: --target-modules query "
        "--target-modules value); null: the "
        "architecture's defaults (bert: query, value; llama: q_proj, v_proj), logged and written into the saved "
        "config.",
    )
    merge: bool = Field(
        False,
        description="Merge the adapters into the weights when saving: a plain model (no peft needed to load) "
        "instead of a small adapter next to the base model.",
    )


class LoraStrategy(Strategy):
    name = "lora"
    settings = LoraSettings
    default_lr = 2e-3  # on SST-2, r 8 query/value: 2e-3 gave 83.94 against 82.00 at 5e-4 (bench/README.md)

    def __init__(self, config):
        super().__init__(config)
        self.targets: list[str] | None = config.target_modules

    def trainable(self, model: nn.Module, task: Task) -> set[str]:
        return {name for name, p in model.named_parameters() if p.requires_grad}

    def apply(self, model: nn.Module, task: Task) -> nn.Module:
        from peft import LoraConfig, get_peft_model

        head = self.inspect(model, task)  # on the plain model; the layer map reads the wrapped names too
        prefix = f"{model.base_model_prefix}."
        linear = _linear_names(model, prefix)
        if self.targets is None:
            self.targets = default_targets(model)
            if self.targets is None:
                raise ConfigError(
                    f"strategy.target_modules: no default for model type "
                    f"{getattr(model.config, 'model_type', '?')!r}; name the linear layers to adapt, from: "
                    f"{', '.join(linear)}"
                )
            log.info("lora: default target modules for %s: %s", model.config.model_type, ", ".join(self.targets))
        unknown = [t for t in self.targets if t not in linear]
        if unknown:
            raise ConfigError(
                f"strategy.target_modules: {', '.join(unknown)} match no linear layer of the backbone; "
                f"choose from: {', '.join(linear)}"
            )
        settings = self.config
        peft_config = LoraConfig(
            r=settings.r,
            lora_alpha=settings.alpha,
            lora_dropout=settings.dropout,
            target_modules=self.targets,
            modules_to_save=head_modules(head) or None,
            bias="none",
            fan_in_fan_out=_targets_conv1d(model, prefix, self.targets),
        )
        for param in model.parameters():
            param.requires_grad_(False)
        with _quiet_peft():
            wrapped = get_peft_model(model, peft_config)
        self.chosen = self.trainable(wrapped, task)
        return wrapped

    def save(self, model: nn.Module, task: Task, root: Path) -> None:
        with _quiet_peft():
            if self.config.merge:
                task.save_model(model.merge_and_unload(), root)
            else:
                model.save_pretrained(root)

    def load(self, task: Task, root: Path, base: Any) -> nn.Module:
        if not (root / ADAPTER_CONFIG).is_file():
            return task.load_model(root)  # saved merged: a plain model
        from peft import PeftModel

        path, tokenizer = base()
        with _quiet_peft():
            return PeftModel.from_pretrained(task.build_model(path, tokenizer), root)

    def resolved(self):
        return self.config.model_copy(update={"target_modules": self.targets})


register_strategy(LoraStrategy)
