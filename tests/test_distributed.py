"""The same loop under DDP (2 processes over gloo) matches 1 process at the same global batch."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

import transferlm
from conftest import tiny_config
from test_training import assert_same_weights

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.slow
@pytest.mark.parametrize(
    "strategy",
    [
        {"name": "full"},
        # parameters without gradients in early epochs: DDP must be told (find_unused_parameters)
        {"name": "last-n", "layers": 2, "gradual_unfreeze": True},
        {"name": "lora", "lora": {"r": 2, "dropout": 0.0}},  # LoRA dropout would draw per-process noise
    ],
    ids=["full", "gradual-unfreeze", "lora"],
)
def test_two_processes_match_one_at_the_same_global_batch(tiny_model_no_dropout, sentiment_files, tmp_path, strategy):
    common = dict(epochs=3 if strategy.get("gradual_unfreeze") else 2, eval_every=100, max_grad_norm=1.0)
    one_config = tiny_config(tiny_model_no_dropout, sentiment_files, tmp_path / "one", batch_size=8, **common)
    two_config = tiny_config(tiny_model_no_dropout, sentiment_files, tmp_path / "two", batch_size=4, **common)
    one_config["strategy"] = two_config["strategy"] = strategy
    single = transferlm.train(one_config)
    config_file = tmp_path / "ddp.json"
    config_file.write_text(json.dumps(two_config))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(WORKER),
            str(config_file),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["event"] == "end" and log[-1]["step"] == single.summary.steps
    weights = "adapter_model.safetensors" if strategy["name"] == "lora" else "model.safetensors"
    one = load_file(str(single.run_dir / weights))
    two = load_file(str(tmp_path / "two" / weights))
    assert_same_weights(one, two, atol=1e-5)
