"""`transferlm export`: a run directory as a self-contained ONNX directory, checked against torch.

The graph computes exactly what ``Task.logits`` keeps from the model (class logits, per-token tag
logits, per-token start/end logits), with dynamic batch and sequence axes. Everything around it
(tokenisation, windows, offsets, Viterbi and span decoding) is the task's own code, shared with the
torch path: the export directory loads with ``transferlm.load`` like a run directory, and its
``model.onnx`` runs on plain onnxruntime.

Steps: ``torch.onnx.export`` -> ONNX Runtime's transformer optimisations where the architecture has them
(BERT family) -> optional dynamic int8 quantisation (per-channel weights).

Which exporter: for architectures ONNX Runtime's optimiser knows, the TorchScript exporter on eager
attention, because the optimiser matches the attention subgraph that exporter writes: it fuses each
layer's attention into one ``Attention`` node (and int8 then quantises it as ``QAttention``). On the
dynamo exporter's graph it finds no attention to fuse (measured on MiniLM: 12 SkipLayerNormalization
and 6 BiasGelu, no Attention), and int8 gains far less. Every other architecture goes through the
dynamo exporter. Either way the parity check below decides whether the graph is published.
Parity on real inputs is measured before anything is published: fp32 fails above ``tolerance`` (the
largest absolute logit difference); int8 reports the task metric on labelled data beside torch's.
The directory is built under a hidden staging name and renamed into place only when complete.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from pydantic import Field
from torch import nn

from transferlm.config.selected import CommandSettings
from transferlm.errors import DiskFullError, ExportError, RunDirError, disk_full, disk_full_problem
from transferlm.extras import require
from transferlm.inference.batches import map_batches, on_inputs
from transferlm.inference.onnx_runtime import MODEL_FILE, OnnxForward
from transferlm.runs import layout
from transferlm.runs.card import model_card
from transferlm.runs.predictor import Predictor, load
from transferlm.tasks.base import Features
from transferlm.training.checkpoint import atomic_write_text

log = logging.getLogger(__name__)

EXPORT = "`transferlm export`"  # what needs the export extra, in its messages
PARITY_EXAMPLES = 256
# Architectures ONNX Runtime's transformer optimiser knows (model_type in the HF config -> its name).
OPTIMIZER_TYPES = {"bert": "bert", "roberta": "bert", "distilbert": "bert", "xlm-roberta": "bert",
                   "electra": "bert", "gpt2": "gpt2"}


@dataclass(frozen=True)
class ExportReport:
    output: str
    quantize: str | None
    max_abs_logit_diff: float
    parity_examples: int
    tolerance: float | None  # None for int8: judged by the metric instead
    metric: str | None
    torch_metric: float | None
    onnx_metric: float | None
    check_examples: int | None
    optimizer: dict[str, Any]
    size_mb: float
    seconds: float


# What a task's batch may feed the model: one input, or a text pair embedded side by side (``tasks/bi_encoder.py``).
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "pair_input_ids", "pair_attention_mask",
               "pair_token_type_ids")


class _Logits(nn.Module):
    """The model with the task's output tensor as its only output (what ONNX sees)."""

    def __init__(self, model: nn.Module, task):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                pair_input_ids: torch.Tensor | None = None, pair_attention_mask: torch.Tensor | None = None,
                pair_token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
                 "pair_input_ids": pair_input_ids, "pair_attention_mask": pair_attention_mask,
                 "pair_token_type_ids": pair_token_type_ids}
        return self.task.logits(self.model(**{k: v for k, v in given.items() if v is not None}))


class ExportSettings(CommandSettings):
    section = "export"
    quantize: Optional[Literal["int8"]] = Field(None, description="Dynamic int8 quantisation (per-channel weights).")
    check: Optional[Path] = Field(
        None, description="Labelled file for the checks (default: the run's validation or test file)."
    )
    tolerance: float = Field(1e-3, description="Largest allowed absolute logit difference to torch, fp32.")


def export(run_dir: Path, output: Path, settings: ExportSettings | None = None,
           overwrite: bool = False) -> ExportReport:
    settings = settings or ExportSettings()
    quantize, check, tolerance = settings.quantize, settings.check, settings.tolerance
    for module in ("onnx", "onnxscript", "onnxruntime"):  # torch.onnx.export needs the first two
        require(module, "export", EXPORT)
    began = time.perf_counter()
    run_dir, output = Path(run_dir), Path(output)
    if not overwrite and (done := _finished(run_dir, output, settings)) is not None:
        log.info("%s: already an export of this run (%s); nothing to do (--overwrite exports again)", output,
                 quantize or "fp32")
        return done
    _check_output(run_dir, output, overwrite)
    predictor = load(run_dir)
    if predictor.backend != "torch":
        raise ExportError(f"{run_dir}: already an ONNX export; export the run directory it came from")
    check_path = _check_file(predictor, run_dir, check)
    labelled = predictor.read(check_path)
    parity_records = labelled[:PARITY_EXAMPLES]
    staging = output.parent / f".{output.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        model = _plain_model(predictor.model)
        features = predictor.features(parity_records, with_labels=False)
        fp32 = staging / "model.fp32.onnx"
        exporter = _exporter(model)
        _export_graph(model, predictor, features, fp32, exporter)
        optimizer = {"exporter": exporter, **_optimise(fp32, model)}
        diff = _fp32_parity(predictor, features, fp32, tolerance, check_path)
        report_metric: tuple[str | None, float | None, float | None, int | None] = (None, None, None, None)
        if quantize == "int8":
            _quantize(fp32, staging / MODEL_FILE)
            fp32.unlink()
            diff, report_metric = _int8_check(predictor, labelled, staging / MODEL_FILE)
        else:
            fp32.rename(staging / MODEL_FILE)
        _copy_run_files(predictor, run_dir, staging)
        report = ExportReport(str(output), quantize, diff, len(features), None if quantize else tolerance,
                              *report_metric, optimizer, round((staging / MODEL_FILE).stat().st_size / 2**20, 1),
                              round(time.perf_counter() - began, 1))
        manifest = {**predictor.manifest, "backend": "onnx", "source_run": str(run_dir.resolve()),
                    "export": asdict(report), "export_settings": settings.model_dump(mode="json")}
        atomic_write_text(staging / layout.MODEL_CARD, model_card(staging, manifest, name=output.name))
        atomic_write_text(staging / layout.MANIFEST, json.dumps(manifest, indent=2))  # last: complete
        _publish(staging, output)
        return report
    except Exception as e:  # any write of the export (the graph, its optimised copy, the run's files)
        if (full := disk_full(e)) is not None:
            raise DiskFullError(f"{disk_full_problem(full, output)}; nothing was written") from e
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_output(run_dir: Path, output: Path, overwrite: bool) -> None:
    if output.resolve() == run_dir.resolve() or output.resolve() in run_dir.resolve().parents:
        raise ExportError(f"--output {output} is the run directory or holds it; export somewhere else")
    if output.exists() and any(output.iterdir()):
        if not overwrite:
            raise ExportError(f"{output}: already exists and is not empty; choose another --output or pass "
                              "--overwrite")
        if not _is_export(output):
            raise ExportError(f"{output}: --overwrite replaces only an earlier export, and this directory is not "
                              "one; choose another --output")


def _fp32_parity(predictor: Predictor, features, path: Path, tolerance: float, check_path: Path) -> float:
    """The largest logit difference between torch and the fp32 graph; above ``tolerance`` nothing is published."""
    torch_rows = predictor.outputs(features)
    onnx_rows = _onnx_outputs(path, predictor, features)
    diff = max(float((a - b).abs().max()) for a, b in zip(torch_rows, onnx_rows, strict=True))
    log.info("fp32 ONNX against torch on %d examples: largest logit difference %.2e", len(features), diff)
    if diff > tolerance:
        raise ExportError(f"the ONNX graph disagrees with torch by {diff:.2e} (> tolerance {tolerance:g}) on "
                          f"{len(features)} inputs from {check_path}; this architecture does not export "
                          "faithfully. Nothing was written.")
    return diff


def _finished(run_dir: Path, output: Path, settings: ExportSettings) -> ExportReport | None:
    """The report of a complete export of this very run (same manifest) at ``output`` with the same settings, so
    that the same command run again after it finished succeeds without work; None otherwise."""
    try:
        saved = json.loads((output / layout.MANIFEST).read_text())
        source = layout.read_manifest(run_dir)
    except (OSError, ValueError, RunDirError):
        return None
    own = {k: v for k, v in saved.items() if k not in ("backend", "source_run", "export", "export_settings")}
    if (saved.get("backend") != "onnx" or saved.get("source_run") != str(run_dir.resolve()) or own != source
            or saved.get("export_settings") != settings.model_dump(mode="json")
            or not (output / MODEL_FILE).is_file()):
        return None
    try:
        return ExportReport(**saved["export"])
    except TypeError:  # written by a version whose report had other fields: export again
        return None


def _is_export(path: Path) -> bool:
    try:
        return json.loads((path / layout.MANIFEST).read_text()).get("backend") == "onnx"
    except (OSError, ValueError):
        return False


def _publish(staging: Path, output: Path) -> None:
    """Move the finished export into place; an earlier export is set aside first and removed only after."""
    old = output.parent / f".{output.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if output.exists():
        output.rename(old)
    try:
        staging.rename(output)
    except OSError:
        if old.exists():
            old.rename(output)  # put the earlier export back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _check_file(predictor: Predictor, run_dir: Path, check: Path | None) -> Path:
    if check is not None:
        return Path(check)
    data = predictor.saved_config.get("data", {})
    for key in ("validation", "test"):
        if data.get(key) and Path(data[key]).is_file():
            return Path(data[key])
    raise ExportError(f"{run_dir}: its validation and test files are gone, and the export is checked on real "
                      "inputs; pass --check FILE (labelled data in the run's format)")


def _plain_model(model: nn.Module) -> nn.Module:
    """A copy of the model to export (the predictor keeps its own for the parity check), LoRA merged."""
    model = copy.deepcopy(model)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return model.eval()


def _exporter(model: nn.Module) -> str:
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    return "torchscript" if OPTIMIZER_TYPES.get(model_type) == "bert" else "dynamo"


def _export_graph(model: nn.Module, predictor: Predictor, features: Features, path: Path, exporter: str) -> None:
    task = predictor.task
    # Two items of different lengths where there are: export must not specialise batch or length to 1.
    sample = sorted(features.items, key=lambda item: len(item["input_ids"]))
    sample = [sample[0], sample[-1]] if len(sample) > 1 else sample * 2
    batch = task.model_inputs(task.collate(sample, predictor.tokenizer.pad_token_id))
    unknown = set(batch) - set(INPUT_NAMES)
    if unknown:
        raise ExportError(f"task {task.name} feeds the model {sorted(unknown)}, which the exporter does not know")
    # A pair's second text has a length of its own.
    batch_dim, lengths = torch.export.Dim("batch"), {"": torch.export.Dim("sequence"),
                                                    "pair_": torch.export.Dim("pair_sequence")}
    dims = {name: {0: batch_dim, 1: lengths[_side(name)]} for name in batch}
    try:
        with warnings.catch_warnings():
            # The exporter's internals warn about their own deprecations (with stack levels that point
            # anywhere); nothing a user can act on, and fatal where warnings are errors.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=r".*The axis name: .* will not be used", category=UserWarning)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            # Advanced indexing with negative indices would export wrongly; the parity check below catches it.
            warnings.filterwarnings("ignore", message=r"Exporting aten::index operator", category=UserWarning)
            if exporter == "torchscript":
                _with_eager_attention(model)
                names = [n for n in INPUT_NAMES if n in batch]  # the forward's order: kwargs become positions
                torch.onnx.export(_Logits(model, task).eval(), (), str(path), kwargs={n: batch[n] for n in names},
                                  input_names=names, output_names=["logits"], dynamo=False, opset_version=17,
                                  dynamic_axes={n: {0: "batch", 1: f"{_side(n)}sequence"} for n in names},
                                  verbose=False)
            else:
                torch.onnx.export(_Logits(model, task).eval(), (), str(path), kwargs=dict(batch),
                                  input_names=list(batch), output_names=["logits"], dynamic_shapes=dims,
                                  dynamo=True, external_data=False, verbose=False)
    except Exception as e:  # the exporter raises many types; name the architecture and stop
        raise ExportError(f"torch.onnx.export cannot export {type(model).__name__} ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:300]}); nothing was written") from e
    finally:
        model.eval()  # exporting leaves wrapped modules in train mode (ENVIRONMENT.md)


def _side(name: str) -> str:
    return "pair_" if name.startswith("pair_") else ""


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _with_eager_attention(model: nn.Module) -> None:
    """Switch every sub-model to eager attention (the model is the export's own copy)."""
    for module in model.modules():
        if hasattr(module, "set_attn_implementation") and getattr(module, "config", None) is not None:
            module.set_attn_implementation("eager")


def _optimise(path: Path, model: nn.Module) -> dict[str, Any]:
    """ONNX Runtime's transformer fusions (attention, layer norm, GELU) where it knows the architecture."""
    config = getattr(model, "config", None)
    model_type = OPTIMIZER_TYPES.get(getattr(config, "model_type", ""))
    if model_type is None:
        reason = f"no transformer fusions for model_type {getattr(config, 'model_type', None)!r}"
        log.info("onnx: %s; the graph keeps ONNX Runtime's generic optimisations", reason)
        return {"applied": False, "reason": reason}
    optimize_model = require("onnxruntime.transformers.optimizer", "export", EXPORT).optimize_model
    with _quiet_root_logger():  # the optimiser logs each fusion on the root logger; the summary follows
        optimised = optimize_model(str(path), model_type=model_type, num_heads=config.num_attention_heads,
                                   hidden_size=config.hidden_size)
    fused = {k: v for k, v in optimised.get_fused_operator_statistics().items() if v}
    optimised.save_model_to_file(str(path))
    log.info("onnx: transformer optimiser (%s) fused %s", model_type, fused or "nothing")
    return {"applied": True, "model_type": model_type, "fused": fused}


def _quantize(source: Path, target: Path) -> None:
    quantization = require("onnxruntime.quantization", "export", EXPORT)
    # Per-channel weight scales: the per-tensor default visibly hurts MiniLM (ENVIRONMENT.md).
    # Fused nodes (com.microsoft domain) defeat the quantiser's shape inference; their outputs are float.
    with _quiet_root_logger():  # the quantiser logs every tensor on the root logger at INFO
        quantization.quantize_dynamic(str(source), str(target), weight_type=quantization.QuantType.QInt8,
                                      per_channel=True, extra_options={"DefaultTensorType": 1})  # TensorProto.FLOAT


def _onnx_outputs(path: Path, predictor: Predictor, features: Features) -> list[torch.Tensor]:
    task = predictor.task
    return map_batches(on_inputs(OnnxForward(path), task), task, features, predictor.tokenizer.pad_token_id,
                       predictor.batch_size)


def _int8_check(predictor: Predictor, labelled, path: Path):
    """int8 is judged by the task metric on labelled data, beside torch's."""
    features = predictor.features(labelled, with_labels=True)
    torch_rows, int8_rows = predictor.outputs(features), _onnx_outputs(path, predictor, features)
    diff = max(float((a - b).abs().max()) for a, b in zip(torch_rows, int8_rows, strict=True))
    metric = predictor.task.default_metric
    torch_value = predictor.task.metrics(torch_rows, features)[metric]
    int8_value = predictor.task.metrics(int8_rows, features)[metric]
    log.info("int8 ONNX: %s %.4f (torch fp32 %.4f) on %d examples; largest logit difference %.2e", metric,
             int8_value, torch_value, len(labelled), diff)
    return diff, (metric, torch_value, int8_value, len(labelled))


def _copy_run_files(predictor: Predictor, run_dir: Path, staging: Path) -> None:
    predictor.tokenizer.save_pretrained(staging)
    for name in (layout.CONFIG, layout.TASK_STATE, layout.METRICS, layout.VERSIONS):
        if not (run_dir / name).is_file():
            raise RunDirError(f"{run_dir}: {name} is missing; the run directory is damaged")
        shutil.copy2(run_dir / name, staging / name)
