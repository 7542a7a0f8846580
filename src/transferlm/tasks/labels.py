"""Label maps for classification: built from train, stored with the model, applied to every split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def normalise_label(value: Any) -> str:
    """One spelling per label: 1, 1.0 and "1" are the same class; text is stripped."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def split_labels(value: Any, delimiter: str | None) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        parts = [normalise_label(v) for v in value]
    elif delimiter and isinstance(value, str):
        parts = [normalise_label(v) for v in value.split(delimiter)]
    else:
        parts = [normalise_label(value)]
    return tuple(sorted({p for p in parts if p}))


@dataclass(frozen=True)
class LabelMap:
    labels: tuple[str, ...]
    numeric: bool  # every label is an integer: predictions give ints back

    @classmethod
    def from_values(cls, values: Sequence[str]) -> LabelMap:
        unique = set(values)
        numeric = all(_is_int(v) for v in unique)
        ordered = sorted(unique, key=int) if numeric else sorted(unique)
        return cls(tuple(ordered), numeric)

    def index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def external(self, label: str) -> str | int:
        return int(label) if self.numeric else label

    def to_dict(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "numeric": self.numeric}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelMap:
        return cls(tuple(data["labels"]), bool(data["numeric"]))


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()
