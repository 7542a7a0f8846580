"""The run configuration: typed, frozen sections, validated in one place.

Each field's ``description`` is its only documentation; the CLI's ``--help`` is built from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from transferlm.config.deprecated import moved_keys
from transferlm.config.selected import (
    STRATEGY_SETTINGS,
    TASK_SETTINGS,
    Section,
    StrategySettings,
    TaskSettings,
    flag,
    select,
)
from transferlm.config.sources import resolve_sources


class ModelConfig(Section):
    name: str = Field(
        "minilm",
        description="Model spec: a bundled alias (see `transferlm models`), a local HF model directory, or a hub id.",
        json_schema_extra=flag("--model"),
    )
    max_length: Union[Literal["auto"], Annotated[int, Field(ge=8, le=8192)]] = Field(
        "auto",
        description="Tokens the model reads at once (special tokens included). Longer inputs are read in windows "
        "or cut as the task says (task.long_inputs). auto: the smallest multiple of 32 holding 95 % of the training "
        "inputs, at most 256 and the model's limit (128 for ner, qa and language modelling); logged, and saved in "
        "the run's config.",
    )
    init: Literal["pretrained", "random"] = Field(
        "pretrained",
        description="pretrained weights, or random: the same architecture and tokenizer trained from scratch "
        "(the no-transfer baseline).",
    )


class DataConfig(Section):
    train: Optional[Path] = Field(None, description="Training file (.csv, .tsv, .jsonl, .parquet).")
    validation: Optional[Path] = Field(
        None, description="Validation file; if absent, a stratified seeded carve-out of train is used."
    )
    test: Optional[Path] = Field(None, description="Test file, evaluated once after training with the best checkpoint.")
    exclude: Optional[Path] = Field(
        None, description="A CSV with a `line` column (label_errors.csv of `transferlm inspect --label-errors`): the "
        "training file's rows at those lines are left out, and how many is logged.",
    )
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet", "conll", "squad", "text"] = Field(
        "auto",
        description="File format; auto uses the file extension (ner: .conll/.iob/.bio/.txt are CoNLL columns; "
        "qa: .json is SQuAD v1.1/v2.0 JSON; causal-lm: .txt/.raw/.text/.md are plain text).",
    )
    header: bool = Field(
        True,
        description="csv/tsv: the first row names the columns; false: there is no header row and columns are named "
        "by position from 0 (AG News: header: false, text_column: [1, 2], label_column: 0).",
    )
    quoting: bool = Field(
        True,
        description="csv: a double quote opens a quoted field; false: quotes are ordinary characters (files such as "
        "the STS Benchmark, whose sentences hold unbalanced quotes that would merge rows). tsv is always read "
        "unquoted (GLUE-style).",
    )
    extra_columns: Literal["error", "ignore"] = Field(
        "error",
        description="csv/tsv: rows with more columns than the header (or the first row, without a header): an "
        "error listing the lines, or ignore the extra trailing cells.",
    )
    text_column: Union[str, list[str]] = Field(
        "text",
        description="Column holding the input text; a list of columns is joined with a space (e.g. a title and a "
        "description; on the command line --text-column '[title, description]').",
    )
    text_pair_column: Optional[str] = Field(None, description="Column holding a second text, for sentence-pair tasks.")
    label_column: str = Field(
        "label", description="Column holding the label (a list or delimited string for multi-label)."
    )

    @field_validator("text_column", "text_pair_column", "label_column", mode="before")
    @classmethod
    def _positions_are_names(cls, v):
        """Column positions (header: false) may be written as numbers; columns are named by strings."""
        if isinstance(v, list):
            if not v:
                raise ValueError("an empty list names no column; give one column or several")
            return [str(c) if isinstance(c, int) and not isinstance(c, bool) else c for c in v]
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v
    validation_split: float = Field(
        0.1, gt=0, lt=0.5, description="Fraction of train carved out for validation when no validation file is given."
    )
    drop_empty: bool = Field(
        False, description="Drop rows whose text is empty or missing instead of reporting them as errors."
    )
    sources: dict[str, dict[str, Any]] = Field(
        {}, description="Set by transferlm for splits given in memory (a DataFrame, a list of dicts, a "
        "datasets.Dataset) or as hf://NAME[:CONFIG]:SPLIT: what each was (kind, rows, SHA-256 of its content). The "
        "split's path is then the JSONL file it was written to, under the transferlm cache.",
        json_schema_extra={"flag": None},
    )

    @model_validator(mode="before")
    @classmethod
    def _data_not_in_files(cls, data: Any) -> Any:
        return resolve_sources(data) if isinstance(data, dict) else data
class TrainConfig(Section):
    epochs: Union[Literal["auto"], float] = Field(
        "auto",
        description="Passes over the training data (fractions allowed). auto: 3, raised on small data sets so that "
        "training takes at least 300 optimizer steps, at most 30 epochs (contrastive: 1 pass over its pairs); the "
        "value chosen is logged and saved in the run's config.",
    )
    max_steps: Optional[int] = Field(None, gt=0, description="Stop after this many optimizer steps (overrides epochs).")
    min_steps: Optional[int] = Field(
        None, gt=0, description="Train at least this many optimizer steps (more epochs on small data sets)."
    )
    batch_size: Union[Literal["auto"], Annotated[int, Field(gt=0)]] = Field(
        "auto",
        description="Examples per device per forward pass. auto: 32, refined by measured rules "
        "(qa on encoders with full or last-n and at most 5,000 training questions: 8; runs/recipes.py), logged with "
        "the rule that chose it and saved in the run's config.",
    )
    grad_accum: int = Field(1, gt=0, description="Forward passes accumulated per optimizer step.")
    max_batch_tokens: Union[Literal["auto"], int, None] = Field(
        "auto",
        description="A training batch whose padded size (examples x longest) exceeds this many tokens runs as "
        "several forward passes whose gradients add up to the same step: long inputs fit in memory at the same "
        "batch_size. auto: 4096 on a CPU (MiniLM at batch 32 x 512 tokens: 12.2 GB peak and 32 s a step in one "
        "pass, 3.6 GB and 22 s in passes of 8), no limit on a GPU; null: no limit.",
    )
    lr: Union[Literal["auto"], float] = Field(
        "auto",
        description="Peak learning rate. auto: the strategy's (full, last-n 5e-5; contrastive 2e-5; lora 2e-3; bitfit "
        "5e-4; frozen 1e-3: the rates measured in bench/README.md), refined per task, model kind and data size by "
        "measured rules (ner, qa, and classification on at most 256 examples, on encoders with full or last-n: "
        "1e-4; runs/recipes.py), logged with the rule "
        "that chose it and saved in the run's config.",
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not applied to biases and LayerNorm).")
    warmup_ratio: float = Field(
        0.06, ge=0, lt=1, description="Fraction of steps with linear warm-up; then linear decay to 0."
    )
    max_grad_norm: Optional[float] = Field(
        1.0, gt=0, description="Clip the global gradient norm to this value; null disables clipping."
    )
    eval_every: Union[Literal["epoch"], int] = Field(
        "epoch", description="Evaluate on validation every epoch, or every N optimizer steps."
    )
    evaluations: Optional[int] = Field(
        None, gt=0, description="Evaluate this many times, evenly spread over training (overrides eval_every)."
    )
    checkpoint_every: Optional[int] = Field(
        None, gt=0, description="Also write a resumable checkpoint every N steps (always at each evaluation)."
    )
    metric: Optional[str] = Field(
        None, description="Validation metric that selects the best checkpoint (task default if null)."
    )
    early_stopping_patience: Optional[int] = Field(
        None, gt=0, description="Stop after this many evaluations without improvement.",
        json_schema_extra=flag("--patience"),
    )
    group_by_length: bool = Field(True, description="Batch examples of similar length together (far less padding).")
    bf16: bool = Field(
        False,
        description="bfloat16 autocast for forward/backward (GPUs, or CPUs with native bfloat16: AVX512-BF16/AMX; "
        "elsewhere it is emulated and far slower, and train warns).",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, about a third more compute."
    )
    seed: int = Field(42, description="Seed for initialisation, data order, dropout and the validation carve-out.")
    log_every: int = Field(50, gt=0, description="Write the training loss to the JSONL log every N steps.")
    progress: bool = Field(True, description="Show a progress bar on a terminal.")
    report_to: list[str] = Field(
        [],
        description="Experiment trackers that record the run: tensorboard, mlflow, wandb (each an extra: pip install "
        "'transferlm[mlflow]'). They get the resolved config as parameters, every training and validation event as "
        "metrics by step, speed and peak memory, and the reports as artifacts; members of compare, curve and tune nest "
        "under one parent run. MLflow reads MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_NAME, W&B WANDB_PROJECT and "
        "WANDB_MODE.",
    )

    @field_validator("epochs", "lr")
    @classmethod
    def _positive_or_auto(cls, v):
        if v != "auto" and v <= 0:
            raise ValueError("must be a positive number or auto")
        return v

    @field_validator("eval_every")
    @classmethod
    def _positive_steps(cls, v):
        if isinstance(v, int) and v <= 0:
            raise ValueError("must be 'epoch' or a positive number of steps")
        return v


class RunConfig(Section):
    model: ModelConfig = ModelConfig()
    # The classes registered for task.type and strategy.name validate these sections (``config/selected.py``);
    # SerializeAsAny writes the chosen class's keys, not only the base class's.
    task: SerializeAsAny[TaskSettings] = Field(default_factory=lambda: select(TASK_SETTINGS, "type", {}, "task"))
    data: DataConfig = DataConfig()
    strategy: SerializeAsAny[StrategySettings] = Field(
        default_factory=lambda: select(STRATEGY_SETTINGS, "name", {}, "strategy")
    )
    train: TrainConfig = TrainConfig()
    output: Optional[Path] = Field(
        None, description="Run directory to write (model, tokenizer, config, metrics, logs)."
    )

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        return moved_keys(data) if isinstance(data, dict) else data

    @field_validator("task", mode="wrap")
    @classmethod
    def _task(cls, value: Any, handler) -> TaskSettings:
        return select(TASK_SETTINGS, "type", value, "task")

    @field_validator("strategy", mode="wrap")
    @classmethod
    def _strategy(cls, value: Any, handler) -> StrategySettings:
        return select(STRATEGY_SETTINGS, "name", value, "strategy")

    @model_validator(mode="after")
    def _needs_train_data(self):
        if self.data.train is None:
            raise ValueError("data.train is required: pass --train FILE or set data.train in the YAML")
        if self.output is None:
            raise ValueError("output is required: pass --output DIR or set output in the YAML")
        return self
