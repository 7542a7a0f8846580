"""Text generation, the public entry point: ``Generator.from_model(spec)`` over a finished causal-lm run or a
pretrained causal LM, and ``load_causal_lm(spec)`` for the model and tokenizer alone.

The generator itself (settings, sampling, stop strings, streaming) is ``transferlm.inference.generation``, below
the run layer so that a loaded run can generate; what is here reads run directories, so it sits above ``runs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferlm.errors import ConfigError
from transferlm.inference import generation as engine
from transferlm.inference.generation import GenerationSettings, cut_at_stop
from transferlm.runs import layout


def load_causal_lm(spec: str) -> tuple[Any, Any]:
    """(model, tokenizer) of a finished causal-lm run (``transferlm train --task causal-lm``), or of a causal LM
    by bundled alias, Hugging Face directory or hub id."""
    if layout.is_complete(Path(spec)):
        from transferlm.runs.predictor import load

        predictor = load(spec)
        if not predictor.task.generates or predictor.model is None:
            raise ConfigError(f"{spec}: a {predictor.task.name} run ({predictor.backend}) is not a language model; "
                              "pass a causal-lm run directory or a causal LM (e.g. smollm2)")
        return predictor.model, predictor.tokenizer
    from transformers import AutoModelForCausalLM

    from transferlm.models.load import load_tokenizer
    from transferlm.models.resolve import resolve_model
    from transferlm.tasks.causal_lm import check_decoder

    path = resolve_model(spec).path
    check_decoder(path)
    return AutoModelForCausalLM.from_pretrained(path), load_tokenizer(path)


class Generator(engine.Generator):
    @classmethod
    def from_model(cls, spec: str) -> Generator:
        """A causal-lm run directory, or a pretrained causal LM by bundled alias, directory or hub id."""
        return cls(*load_causal_lm(spec))


__all__ = ["GenerationSettings", "Generator", "cut_at_stop", "load_causal_lm"]
