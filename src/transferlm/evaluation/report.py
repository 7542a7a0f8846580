"""Human-readable renderings of metrics: a summary table, a text confusion matrix, a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def summary_lines(metrics: dict[str, Any]) -> list[str]:
    scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
    lines = [f"{k:>16}: {v:.4f}" for k, v in scalars.items()]
    per_class = metrics.get("per_class")
    if per_class:
        width = max(8, *(len(str(label)) for label in per_class))
        lines.append("")
        lines.append(f"{'label':>{width}}  precision  recall      f1  support")
        for label, m in per_class.items():
            lines.append(
                f"{label:>{width}}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:6.4f}  {m['support']:7d}"
            )
    return lines


def confusion_text(confusion: dict[str, Any]) -> str:
    labels, matrix = [str(x) for x in confusion["labels"]], confusion["matrix"]
    width = max(6, *(len(x) for x in labels), *(len(str(v)) for row in matrix for v in row))
    head = " " * width + " | " + " ".join(f"{x:>{width}}" for x in labels) + "   (columns: predicted)"
    rows = [
        f"{label:>{width}} | " + " ".join(f"{v:>{width}}" for v in row)
        for label, row in zip(labels, matrix, strict=False)
    ]
    return "\n".join([head, "-" * len(head)] + rows) + "\n"


def save_confusion_png(confusion: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, matrix = [str(x) for x in confusion["labels"]], confusion["matrix"]
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_reports(metrics: dict[str, Any], directory: Path, name: str) -> list[Path]:
    """Write ``{name}_confusion.txt`` / ``.png`` when the metrics carry a confusion matrix."""
    confusion = metrics.get("confusion_matrix")
    if not confusion:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    text, png = directory / f"{name}_confusion.txt", directory / f"{name}_confusion.png"
    text.write_text(confusion_text(confusion), encoding="utf-8")
    save_confusion_png(confusion, png, f"{name} confusion matrix")
    return [text, png]
