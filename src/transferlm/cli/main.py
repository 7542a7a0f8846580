"""`transferlm` command line: parses, dispatches, and turns library errors into messages and exit codes."""

from __future__ import annotations

import argparse
import logging
import sys

from transferlm import __version__
from transferlm.cli import commands
from transferlm.cli.flags import add_flags, run_flags, section_flags, selected_names
from transferlm.cli.train_args import add_train_arguments
from transferlm.errors import DiskFullError, Terminated, TransferLMError, disk_full, disk_full_problem


def _settings_group(parser: argparse.ArgumentParser, cls, title: str = "settings") -> None:
    """Flags for every key of a command's settings class (its defaults and documentation live there)."""
    group = parser.add_argument_group(title)
    flags = section_flags(cls)
    add_flags(parser, flags, lambda flag: group)
    parser.set_defaults(settings_flags=(cls, flags))


def _add_experiment_commands(sub, chosen: dict) -> None:
    from transferlm.experiments.config import AutoSettings, CompareSettings, CurveSettings, RankSettings, TuneSettings

    taken = {f.flag for f in run_flags()}
    commands_and_sections = (
        ("compare", CompareSettings, commands.cmd_compare,
         "Train several strategies and baselines on the same split; report which transfer helped.",
         "Compare strategies against baselines (the task's own: TF-IDF + logistic regression, a CRF, a word-overlap "
         "answer finder, ridge regression; and the same model from random initialisation) on one split and budget, "
         "over seeds. Writes report.md/.html/.json and a chart into --output. Re-running the same command continues "
         "an interrupted comparison."),
        ("curve", CurveSettings, commands.cmd_curve,
         "Metric against number of labelled examples (nested subsets), for strategies and baselines.",
         "Learning curves: train on nested subsets of the training data (sizes per class; per example for tasks "
         "without classes) over seeds. Writes curve.csv, curve.png, report.md and report.json into --output."),
        ("tune", TuneSettings, commands.cmd_tune,
         "Search hyperparameters on the validation split (Optuna: TPE, pruning, shared storage).",
         "Hyperparameter search with Optuna. The space is `tune.space` in the YAML (any config key: float/int "
         "ranges, optionally log-scaled, or categorical choices); by default the strategy's: train.lr (log range "
         "around its default), train.batch_size, train.weight_decay, plus lora's r, last-n's layers, contrastive's "
         "pairs_per_example. Each trial trains in its own process; the pruner stops poor trials on their "
         "intermediate validation scores. The study is stored in OUTPUT/study.db (re-running continues it) or in "
         "--storage, which several workers on several machines may share. Writes best.yaml, trials.csv, report.md, "
         "report.html and report.json into --output."),
        ("rank", RankSettings, commands.cmd_rank,
         "Rank candidate pretrained models for the training data in seconds, before any fine-tuning (LogME).",
         "Score each of --models on the training data without training it: LogME (You et al., ICML 2021) on its "
         "frozen features (mean-pooled for encoders, the last token for decoders, per token for ner and qa), and "
         "with --probe a cross-validated linear probe on them too. Writes rank.md and rank.json into --output."),
        ("auto", AutoSettings, commands.cmd_auto,
         "Profile the data, choose model, strategy and budget, train, compare with the baseline; explain each step.",
         "One command for a labelled file: infers the task (CoNLL columns: ner; SQuAD JSON: qa; text and a category: "
         "classification; text and a number: regression), profiles the data (classes, imbalance, lengths, "
         "duplicates, conflicting labels), ranks --models when several are given, chooses the strategy, class "
         "weights and the number of steps that fits --time-budget (from a timed training step), trains and compares "
         "against the task's no-transfer baseline. Settings you give are kept. Writes auto-report.md/.html/.json "
         "with the evidence for every choice and a `transferlm train` line that reproduces the run. --dry-run "
         "prints the plan and trains nothing."),
    )
    for name, cls, func, help_text, description in commands_and_sections:
        parser = sub.add_parser(name, help=help_text, description=description)
        add_train_arguments(parser, resume=False, chosen=chosen)
        group = parser.add_argument_group(f"{name} settings (each is also a YAML key under {name}:)")
        flags = section_flags(cls, f"{name}.", taken)
        add_flags(parser, flags, lambda flag, group=group: group)
        parser.set_defaults(func=func, experiment_flags=flags)


def _add_training_commands(sub, chosen: dict) -> None:
    train = sub.add_parser(
        "train",
        help="Fine-tune a pretrained model on labelled data.",
        description="Fine-tune a pretrained model. Give a YAML config, flags, or both.",
    )
    add_train_arguments(train, chosen=chosen)
    train.set_defaults(func=commands.cmd_train)

    adapt = sub.add_parser(
        "adapt",
        help="Continue pretraining on unlabelled text (domain adaptation); the output is a model for train --model.",
        description="Domain-adaptive pretraining: masked-LM (task.mlm_probability, --whole-word-mask) for encoders, "
        "causal-LM for decoders, picked from the model unless --task names one. Takes train's settings: --train is "
        "the unlabelled text (.txt: paragraphs, or --documents lines; or a table's --text-column); --strategy lora "
        "is merged on save. The run directory is a plain model directory.",
    )
    add_train_arguments(adapt, chosen=chosen)
    adapt.set_defaults(func=commands.cmd_adapt)


def _add_run_commands(sub) -> None:
    from transferlm.runs.predictor import PREDICT_BATCH

    evaluate = sub.add_parser("evaluate", help="Score a finished run on a labelled file.")
    evaluate.add_argument("run", help="Run directory written by `transferlm train`.")
    evaluate.add_argument("--data", required=True, help="Labelled file with the run's text/label columns.")
    evaluate.add_argument("--json", action="store_true", help="Print all metrics as JSON.")
    evaluate.add_argument("--report-dir", help="Also write a confusion matrix (text and PNG) here.")
    evaluate.set_defaults(func=commands.cmd_evaluate)

    predict = sub.add_parser("predict", help="Predict labels; writes one JSON object per input (JSONL).")
    predict.add_argument("run", help="Run directory written by `transferlm train`.")
    predict.add_argument(
        "--input",
        required=True,
        help="A .txt file (one text per line), a CSV/TSV/JSONL/Parquet file with the run's text "
        "column, or - for stdin lines.",
    )
    predict.add_argument("--output", help="Write the JSONL here instead of stdout.")
    predict.add_argument("--batch-size", type=int, default=PREDICT_BATCH, help="Examples per forward pass.")
    predict.set_defaults(func=commands.cmd_predict)


def _add_language_model_commands(sub) -> None:
    from transferlm.evaluation.perplexity import PerplexitySettings
    from transferlm.inference.generation import GenerationSettings

    generate = sub.add_parser(
        "generate", help="Generate text with a causal-lm run or a causal LM (greedy or sampled, streamed).",
        description="Continue --prompt (streamed to the terminal) or every prompt of --input (a .txt file, one per "
        "line, or JSONL with \"prompt\" or \"messages\" per line; results as JSONL).")
    generate.add_argument("model", help="A causal-lm run directory, or a model: bundled alias (smollm2), directory "
                          "or hub id.")
    generate.add_argument("--prompt", help="One prompt.")
    generate.add_argument("--input", help="Prompts: .txt (one per line) or .jsonl (prompt or messages per line).")
    generate.add_argument("--chat", action="store_true",
                          help="Render each prompt as a user turn with the model's chat template.")
    generate.add_argument("--output", help="Write the JSONL here instead of stdout (with --input).")
    _settings_group(generate, GenerationSettings, "generation settings")
    generate.set_defaults(func=commands.cmd_generate)

    ppl = sub.add_parser("perplexity", help="Perplexity of a causal LM on a text file, with its protocol.",
                         description="Sliding-window perplexity: windows of --context tokens, each scoring the next "
                         "--stride tokens; every token after the first is scored once. The protocol is printed so "
                         "two figures can be compared.")
    ppl.add_argument("model", help="A causal-lm run directory, or a model: bundled alias, directory or hub id.")
    ppl.add_argument("--data", required=True, help="A text file (read whole, as one sequence).")
    ppl.add_argument("--json", action="store_true", help="Print the result as JSON.")
    _settings_group(ppl, PerplexitySettings, "perplexity settings")
    ppl.set_defaults(func=commands.cmd_perplexity)


def _add_explain_command(sub) -> None:
    from transferlm.inference.explain import ExplainSettings

    explain = sub.add_parser(
        "explain", help="Why did the model predict that? Word attributions (integrated gradients).",
        description="Attribute each prediction to the input's words: layer integrated gradients on the embedding "
        "layer against a baseline of --baseline tokens, subwords summed into words; the convergence delta is "
        "reported. JSONL (one object per input) and an HTML page with the words shaded.")
    explain.add_argument("run", help="Run directory written by `transferlm train` (classification, regression).")
    explain.add_argument("--input", required=True, help="Inputs as `predict` takes them: .txt (one per line), "
                         "CSV/TSV/JSONL/Parquet, or - for stdin.")
    explain.add_argument("--output", help="Write the JSONL here instead of stdout.")
    explain.add_argument("--html", help="Also write an HTML page with the words shaded.")
    _settings_group(explain, ExplainSettings, "explain settings")
    explain.set_defaults(func=commands.cmd_explain)


def _add_inspect_command(sub) -> None:
    from transferlm.experiments.inspect import InspectSettings

    inspect = sub.add_parser(
        "inspect", help="Can this model be trusted on this data? Calibration, confidently wrong examples, slices.",
        description="Score a run on a labelled file and write inspect.{json,md,html} into --output: calibration "
        "(ECE, classwise ECE, Brier; reliability diagram) at the run's temperature and at 1, the most confidently "
        "wrong examples, and the metric per slice (true label, input length, and each --slice-column) with 95 %% "
        "intervals; a slice worse than the rest beyond its noise is named.")
    inspect.add_argument("run", help="Run directory written by `transferlm train`.")
    inspect.add_argument("--data", required=True, help="A labelled file in the run's format.")
    inspect.add_argument("--output", required=True, help="Directory for the report.")
    _settings_group(inspect, InspectSettings, "inspect settings")
    inspect.set_defaults(func=commands.cmd_inspect)


def _add_shipping_commands(sub) -> None:
    from transferlm.exporting.onnx import ExportSettings
    from transferlm.serving.settings import ServeSettings

    export = sub.add_parser(
        "export",
        help="Export a run to ONNX (optionally int8), checked against torch; loads with transferlm.load.",
        description="Export a finished run to a self-contained ONNX directory (model.onnx, tokenizer, label map, "
        "task state, metrics). The fp32 graph must match torch within --tolerance on real inputs; with "
        "--quantize int8 the task metric on --check data is printed beside torch's.",
    )
    export.add_argument("run", help="Run directory written by `transferlm train`.")
    export.add_argument("--output", required=True, help="Directory to write.")
    export.add_argument("--overwrite", action="store_true", help="Replace an existing --output.")
    _settings_group(export, ExportSettings, "export settings")
    export.set_defaults(func=commands.cmd_export)

    serve = sub.add_parser(
        "serve",
        help="Serve a run or export directory over HTTP (micro-batched; playground page at /).",
        description="POST /v1/predict {\"inputs\": [...]}; GET /health, /ready, /v1/model, /metrics (Prometheus), "
        "/docs, and / (a playground page). Binds 127.0.0.1 unless --host says otherwise.",
    )
    serve.add_argument("run", help="Run directory (`transferlm train`) or export directory (`transferlm export`).")
    _settings_group(serve, ServeSettings, "serve settings")
    serve.set_defaults(func=commands.cmd_serve)

    push = sub.add_parser(
        "push", help="Upload a run or export directory to the Hugging Face Hub, with its model card.",
        description="Create the Hub repository --repo (if needed) and upload the files that make the model: weights, "
        "config, tokenizer, label map, metrics and the README.md model card; not checkpoints, logs or tracker "
        "folders. Needs a token (`hf auth login` or HF_TOKEN) and the network; offline it fails at once.")
    push.add_argument("run", help="Run directory (`transferlm train`) or export directory (`transferlm export`).")
    push.add_argument("--repo", required=True, help="Hub repository id, e.g. your-name/sst2-minilm.")
    push.add_argument("--private", action="store_true", help="Create the repository private.")
    push.add_argument("--message", help="Commit message.")
    push.add_argument("--dry-run", action="store_true", help="List the files that would be uploaded; upload nothing.")
    push.set_defaults(func=commands.cmd_push)

    card = sub.add_parser("card", help="(Re)write a run's README.md model card from its files.",
                          description="Write README.md (Hugging Face model card format) into a finished run or "
                          "export directory; runs trained by an older transferlm have none.")
    card.add_argument("run", help="Run or export directory.")
    card.set_defaults(func=commands.cmd_card)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; ``argv`` (the command line to parse) tells ``--help`` which task's and strategy's settings to
    document."""
    chosen = selected_names(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="transferlm", description="Transfer pretrained language models to your task.")
    parser.add_argument("--version", action="version", version=f"transferlm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging, including library warnings.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_training_commands(sub, chosen)
    _add_experiment_commands(sub, chosen)
    _add_run_commands(sub)
    _add_language_model_commands(sub)
    _add_explain_command(sub)
    _add_inspect_command(sub)
    _add_shipping_commands(sub)

    models = sub.add_parser("models", help="List bundled model aliases and whether they are installed.")
    models.set_defaults(func=commands.cmd_models)

    env = sub.add_parser("env", help="Library versions, threads and device, for bug reports.")
    env.add_argument("--json", action="store_true", help="Print as JSON.")
    env.set_defaults(func=commands.cmd_env)
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="transferlm: %(message)s", stream=sys.stderr
    )
    for noisy in ("transformers", "accelerate", "urllib3", "httpx", "huggingface_hub", "matplotlib", "filelock"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not verbose:
        from transformers.utils import logging as hf_logging

        # The load report lists the new head's weights as "missing": expected when adding a head.
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return args.func(args)
    except TransferLMError as e:
        print(f"error: {type(e).__name__}", file=sys.stderr)
        for problem in e.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    except OSError as e:
        if (full := disk_full(e)) is None:
            raise
        print(f"error: {DiskFullError.__name__}\n  - {disk_full_problem(full)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print("interrupted; a training run continues from its last checkpoint with --resume, and compare, curve "
              "and tune continue when run again with the same command", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
