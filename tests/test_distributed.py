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
        {"name": "lora", "r": 2, "dropout": 0.0},  # LoRA dropout would draw per-process noise
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


@pytest.mark.slow
def test_two_nodes_joined_by_a_c10d_rendezvous_match_one_process(tiny_model_no_dropout, sentiment_files, tmp_path):
    """Multi-node as the README describes it: two `torchrun --nnodes 2 --nproc-per-node 1` launches (here both on
    this machine) meet at a c10d rendezvous on loopback; the data and output paths are the same for both (shared
    storage), and only global rank 0 writes."""
    import socket

    common = dict(epochs=2, eval_every=100, max_grad_norm=1.0)
    single = transferlm.train(tiny_config(tiny_model_no_dropout, sentiment_files, tmp_path / "one", batch_size=8,
                                          **common))
    config_file = tmp_path / "nodes.json"
    config_file.write_text(json.dumps(tiny_config(tiny_model_no_dropout, sentiment_files, tmp_path / "two",
                                                  batch_size=4, **common)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
             "--node-rank", str(rank), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
             "--rdzv-id", "transferlm-test", "--master-addr", "127.0.0.1", str(WORKER), str(config_file)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for rank in (0, 1)
    ]
    for node in nodes:
        output, _ = node.communicate(timeout=300)
        assert node.returncode == 0, output[-3000:]
    log = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["event"] == "end" and log[-1]["step"] == single.summary.steps
    assert len([e for e in log if e["event"] == "end"]) == 1  # one writer
    assert_same_weights(load_file(str(single.run_dir / "model.safetensors")),
                        load_file(str(tmp_path / "two" / "model.safetensors")), atol=1e-5)
