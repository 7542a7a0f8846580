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
def test_two_processes_match_one_at_the_same_global_batch(tiny_model_no_dropout, sentiment_files, tmp_path):
    common = dict(epochs=2, eval_every=100, max_grad_norm=1.0)
    single = transferlm.train(
        tiny_config(tiny_model_no_dropout, sentiment_files, tmp_path / "one", batch_size=8, **common)
    )
    config_file = tmp_path / "ddp.json"
    config_file.write_text(
        json.dumps(tiny_config(tiny_model_no_dropout, sentiment_files, tmp_path / "two", batch_size=4, **common))
    )
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
    one = load_file(str(single.run_dir / "model.safetensors"))
    two = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert_same_weights(one, two, atol=1e-5)
