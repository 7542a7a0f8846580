"""Data that is not a file yet: a pandas DataFrame, a list of dicts, a Hugging Face ``datasets.Dataset`` (a
``DatasetDict`` for the splits), or ``hf://NAME[:CONFIG]:SPLIT`` (``datasets.load_dataset``, a hub id or a local
dataset directory). Each is written once, by content, to a JSONL file under the transferlm cache, and the run reads
that file like any other: the same column settings, the same errors, and a path that compare, resume and the model
card can name. ``data.sources`` records what each split was (kind, rows, SHA-256 of its content)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from transferlm.errors import ConfigError

HF_SCHEME = "hf://"
SPLITS = ("train", "validation", "test")


def cache_root() -> Path:
    """transferlm's cache ($TRANSFERLM_CACHE, default ~/.cache/transferlm): converted models, data from memory."""
    return Path(os.environ.get("TRANSFERLM_CACHE", Path.home() / ".cache" / "transferlm"))


def in_memory(value: Any) -> bool:
    """Whether ``value`` is data to convert rather than a file path."""
    if isinstance(value, str):
        return value.startswith(HF_SCHEME)
    return value is not None and not isinstance(value, os.PathLike)


def resolve_sources(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (the config's data section, as given) with every in-memory split written to a file; a DatasetDict as
    ``train`` also fills validation and test from its splits of those names when they are not given."""
    if not any(in_memory(data.get(split)) for split in SPLITS):
        return data
    data = dict(data)
    train = data.get("train")
    if _is_dataset_dict(train):
        for split in ("validation", "test"):
            if data.get(split) is None and split in train:
                data[split] = train[split]
        if "train" not in train:
            raise ConfigError(f"data.train: the DatasetDict has no 'train' split (it has {', '.join(train)}); "
                              "pass the split to train on, e.g. data['train']")
        data["train"] = train["train"]
    if data.get("format", "auto") not in ("auto", "jsonl"):
        raise ConfigError(f"data.format {data['format']!r}: data given in memory is read as JSONL, and data.format "
                          "applies to every split; leave data.format auto")
    sources = dict(data.get("sources") or {})
    for split in SPLITS:
        value = data.get(split)
        if in_memory(value):
            rows, kind = _rows(value, split)
            data[split], sources[split] = _written(rows, kind)
    data["sources"] = sources
    return data


def _is_dataset_dict(value: Any) -> bool:
    """A DatasetDict, or what is left of one after a config was copied into plain dicts: split name -> Dataset."""
    return isinstance(value, dict) and bool(value) and all(type(v).__name__ == "Dataset" for v in value.values())


def _rows(value: Any, split: str) -> tuple[list[dict[str, Any]], str]:
    if isinstance(value, str):
        return _hub_rows(value, split), value
    kind = type(value).__name__
    if kind == "DataFrame" and hasattr(value, "to_dict"):
        return [_plain(row) for row in value.to_dict(orient="records")], "pandas.DataFrame"
    if kind == "Dataset" and hasattr(value, "features"):
        return _dataset_rows(value), "datasets.Dataset"
    if isinstance(value, (list, tuple)) and all(isinstance(row, dict) for row in value):
        if not value:
            raise ConfigError(f"data.{split}: an empty list holds no examples")
        return [_plain(row) for row in value], "list of dicts"
    raise ConfigError(f"data.{split}: a {kind} is not data transferlm reads; give a file path, a pandas DataFrame, a "
                      "list of dicts (one per example), a datasets.Dataset or DatasetDict, or hf://NAME[:CONFIG]:SPLIT")


def _class_names(feature: Any) -> tuple[list[str], bool] | None:
    """A ClassLabel's names, and whether it sits inside a sequence (NER tags: ``Sequence(ClassLabel)``/``List``)."""
    if type(feature).__name__ == "ClassLabel":
        return feature.names, False
    inner = getattr(feature, "feature", None)
    if type(feature).__name__ in ("Sequence", "List", "LargeList") and type(inner).__name__ == "ClassLabel":
        return inner.names, True
    return None


def _dataset_rows(dataset) -> list[dict[str, Any]]:
    """A Dataset's rows, with ClassLabel columns (and sequences of them) as their label names: what users call
    their labels, and what a tagging task reads."""
    names = {column: found for column, feature in dataset.features.items() if (found := _class_names(feature))}

    def name(labels: list[str], value: Any) -> Any:
        return labels[value] if isinstance(value, int) and 0 <= value < len(labels) else value

    rows = []
    for row in dataset.to_list():
        for column, (labels, sequence) in names.items():
            value = row.get(column)
            row[column] = [name(labels, v) for v in value] if sequence and isinstance(value, list) else \
                name(labels, value)
        rows.append(_plain(row))
    return rows


def _hub_rows(spec: str, split_name: str) -> list[dict[str, Any]]:
    """``hf://NAME:SPLIT`` or ``hf://NAME:CONFIG:SPLIT`` through ``datasets.load_dataset`` (its own cache)."""
    from transferlm.extras import require

    parts = spec[len(HF_SCHEME):].split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise ConfigError(f"data.{split_name}: {spec!r} is not hf://NAME:SPLIT or hf://NAME:CONFIG:SPLIT "
                          "(e.g. hf://stanfordnlp/sst2:train, hf://nyu-mll/glue:sst2:validation)")
    name, config, split = parts[0], parts[1] if len(parts) == 3 else None, parts[-1]
    datasets = require("datasets", "datasets", f"data.{split_name}: {spec}")
    try:
        dataset = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds (offline, no such split, no such config)
        offline = " (offline: HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set)" if _offline() else ""
        raise ConfigError(f"data.{split_name}: cannot load {spec}{offline}: {type(e).__name__}: {e}. Check the name, "
                          "config and split, or download it where the network is reachable (it is then cached)") \
            from e
    return _dataset_rows(dataset)


def _offline() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {str(k): _value(v) for k, v in row.items()}


def _value(v: Any) -> Any:
    """JSON-ready: numpy scalars and arrays as Python values; pandas' missing values (NaN, NA, NaT) as null."""
    if type(v).__name__ in ("NAType", "NaTType"):
        return None
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):
        v = v.tolist()
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {str(k): _value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_value(x) for x in v]
    return v


def _written(rows: list[dict[str, Any]], kind: str) -> tuple[Path, dict[str, Any]]:
    """The rows as a JSONL file named by its content (written once, atomically), and what it records."""
    # default=str: dates, decimals and the like become their text, as a CSV of the same frame would hold them
    text = "".join(json.dumps(row, ensure_ascii=False, sort_keys=True, default=str) + "\n" for row in rows)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    path = cache_root() / "data" / f"{digest[:24]}.jsonl"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    return path, {"kind": kind, "rows": len(rows), "sha256": digest}
