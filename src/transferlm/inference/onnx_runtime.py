"""The ONNX Runtime backend: an exported ``model.onnx`` as ``forward(**model_inputs) -> tensor``.

``transferlm export`` writes the graph; ``runs.predictor`` (an export directory) and the export's parity check run
it through this class, in place of the torch model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from transferlm.errors import ExportError
from transferlm.extras import require

MODEL_FILE = "model.onnx"  # the graph's name in an export directory


class OnnxForward:
    """``forward(**model_inputs) -> tensor`` on an ONNX Runtime session: the drop-in for the torch model."""

    def __init__(self, path: Path, threads: int | None = None, spin: bool = True):
        """``spin=False`` stops idle intra-op threads from spin-waiting for work: a server's event loop shares the
        cores with them (serving int8 on 2 cores: 170 requests/s against 152 one at a time, 125 against 91
        micro-batched; bench/README.md)."""
        ort = require("onnxruntime", "export", "running an ONNX export")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, **inputs: torch.Tensor) -> torch.Tensor:
        missing = set(self.input_names) - set(inputs)
        if missing:
            raise ExportError(f"the ONNX model needs inputs {sorted(missing)} that the task did not give")
        feed = {name: inputs[name].cpu().numpy() for name in self.input_names}
        return torch.from_numpy(self.session.run(None, feed)[0])
