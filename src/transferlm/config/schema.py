"""The run configuration: typed, frozen sections, validated in one place.

Each field's ``description`` is its only documentation; the CLI's ``--help`` is built from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ModelConfig(Section):
    name: str = Field(
        "minilm",
        description="Model spec: a bundled alias (see `transferlm models`), a local HF model directory, or a hub id.",
    )
    max_length: int = Field(128, ge=8, le=8192, description="Longest input in tokens; longer inputs are truncated.")
    init: Literal["pretrained", "random"] = Field(
        "pretrained",
        description="pretrained weights, or random: the same architecture and tokenizer trained from scratch "
        "(the no-transfer baseline).",
    )


class TaskConfig(Section):
    type: str = Field(
        "classification",
        description="Task to transfer to (registered tasks: classification, ner, qa, causal-lm, masked-lm; "
        "`transferlm adapt` picks masked-lm or causal-lm from the model).",
    )
    multi_label: bool = Field(
        False, description="Each example may carry several labels (sigmoid outputs, per-label threshold)."
    )
    pooling: Literal["auto", "cls", "mean"] = Field(
        "auto",
        description="Sentence representation for the head: cls (the model's own head; loads with plain "
        "transformers), mean over tokens (better for sentence-embedding models like minilm), or auto: mean where "
        "the checkpoint says it was trained with mean pooling (a sentence-transformers pooling config), else cls.",
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="Multi-label decision threshold on each label's probability.")
    class_weights: Union[Literal["none", "auto"], list[float]] = Field(
        "none",
        description="Loss weights per class: none, auto (inverse train frequency), or a list in label order.",
    )
    stride: Optional[int] = Field(
        None,
        ge=0,
        description="Subword tokens shared by consecutive windows of a long input (ner: a sentence; qa: a "
        "context, the doc_stride of the SQuAD scripts); null: 32 for ner, 128 for qa. qa caps it at half "
        "of the context a window holds.",
    )
    label_all_subwords: bool = Field(
        False,
        description="ner: train on every subword of a word (later pieces of a B- word get I-) instead of "
        "only the first; predictions always read the first subword.",
    )
    max_answer_length: int = Field(
        30, gt=0, description="qa: the longest answer predicted, in subword tokens."
    )
    n_best: int = Field(
        20, gt=0, description="qa: start and end positions per window searched for the best legal answer span."
    )
    mlm_probability: float = Field(
        0.15, gt=0, lt=1,
        description="masked-lm: share of tokens predicted per block (of those, 80% become the mask token, 10% a "
        "random token, 10% stay).",
    )
    whole_word_mask: bool = Field(
        False, description="masked-lm: choose whole words to mask (all their subword pieces together)."
    )


class DataConfig(Section):
    train: Optional[Path] = Field(None, description="Training file (.csv, .tsv, .jsonl, .parquet).")
    validation: Optional[Path] = Field(
        None, description="Validation file; if absent, a stratified seeded carve-out of train is used."
    )
    test: Optional[Path] = Field(None, description="Test file, evaluated once after training with the best checkpoint.")
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
        description="csv/tsv: a double quote opens a quoted field; false: quotes are ordinary characters (files "
        "such as the STS Benchmark, whose sentences hold unbalanced quotes that would merge rows).",
    )
    extra_columns: Literal["error", "ignore"] = Field(
        "error",
        description="csv/tsv: rows with more columns than the header (or the first row, without a header): an "
        "error listing the lines, or ignore the extra trailing cells.",
    )
    text_column: Union[str, list[str]] = Field(
        "text",
        description="Column holding the input text; a list of columns is joined with a space (e.g. a title and a "
        "description).",
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
    label_delimiter: Optional[str] = Field(
        None, description="Splits a string label column into several labels (multi-label), e.g. '|'."
    )
    validation_split: float = Field(
        0.1, gt=0, lt=0.5, description="Fraction of train carved out for validation when no validation file is given."
    )
    drop_empty: bool = Field(
        False, description="Drop rows whose text is empty or missing instead of reporting them as errors."
    )
    tokens_column: str = Field("tokens", description="ner, JSONL: key holding the list of tokens.")
    tags_column: str = Field("tags", description="ner, JSONL: key holding the list of tags, one per token.")
    entities_column: str = Field(
        "entities",
        description="ner, JSONL with raw text: key holding the entities, [{start, end, label}] in characters "
        "(end exclusive).",
    )
    question_column: str = Field("question", description="qa, JSONL: key holding the question.")
    context_column: str = Field("context", description="qa, JSONL: key holding the context passage.")
    answers_column: str = Field(
        "answers",
        description="qa, JSONL: key holding the answers, {text: [...], answer_start: [...]} or "
        "[{text, answer_start}, ...] with character offsets into the context; empty for unanswerable.",
    )
    id_column: str = Field("id", description="qa, JSONL: key holding the question id (default: the line number).")
    messages_column: str = Field(
        "messages", description="causal-lm: key holding a chat as [{role, content}, ...] (loss on assistant turns)."
    )
    prompt_column: str = Field("prompt", description="causal-lm: key holding the prompt of a prompt/completion pair.")
    completion_column: str = Field(
        "completion", description="causal-lm: key holding the completion (the only part with a loss)."
    )
    documents: Literal["paragraphs", "lines", "file"] = Field(
        "paragraphs",
        description="causal-lm and masked-lm, plain text: what one document is (documents are joined with the "
        "end-of-sequence (masked-lm: separator) token and packed into blocks of model.max_length): paragraphs "
        "between blank lines, lines, or the file.",
    )
    conll_tag_column: int = Field(
        -1, description="ner, CoNLL: index of the tag column (0 is the token; -1, the last column, by default)."
    )
    tag_scheme: Literal["auto", "iob1", "bio", "bioes"] = Field(
        "auto",
        description="ner: tag scheme of the files (converted to BIO). auto: bioes if E-/S- occur, iob1 if "
        "entities start with I-, else bio, where an I- after O is reported as an error.",
    )


class LoraSettings(Section):
    r: int = Field(8, gt=0, description="LoRA rank.")
    alpha: float = Field(16, gt=0, description="LoRA scaling numerator: updates are scaled by alpha / r.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the LoRA branch input.")
    target_modules: Optional[list[str]] = Field(
        None,
        description="Module names that get adapters; null: the architecture's defaults (bert: query, value; "
        "llama: q_proj, v_proj), logged and written into the saved config.",
    )
    merge: bool = Field(
        False,
        description="Merge the adapters into the weights when saving: a plain model (no peft needed to load) "
        "instead of a small adapter next to the base model.",
    )


class ContrastiveSettings(Section):
    pairs_per_example: int = Field(
        40,
        gt=0,
        description="Sentence pairs drawn per training example (half positive, half negative); one epoch of "
        "stage 1 is one pass over them (SetFit's recipe: 20 iterations of a positive and a negative pair).",
    )
    head_c: float = Field(
        1.0,
        gt=0,
        description="Inverse L2 strength of the logistic-regression head fitted on the embeddings (scikit-learn's "
        "C; SetFit's default is 1).",
    )


class StrategyConfig(Section):
    name: str = Field(
        "full",
        description="How much of the model trains (registered: full, frozen, last-n, lora, bitfit, contrastive).",
    )
    layers: Optional[int] = Field(None, gt=0, description="last-n: how many top transformer layers train.")
    lora: LoraSettings = LoraSettings()
    layer_lr_decay: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Layer-wise learning-rate decay: the head trains at train.lr, the layer k below it at "
        "lr * decay**k, embeddings lowest (1 = off; 0.8-0.95 is usual).",
    )
    gradual_unfreeze: bool = Field(
        False,
        description="Train only the head in the first epoch and unfreeze one more layer group (top down) "
        "each epoch (ULMFiT).",
    )
    contrastive: ContrastiveSettings = ContrastiveSettings()
    cache_features: bool = Field(
        True,
        description="frozen: compute the backbone's outputs once and train the head on them (same result, "
        "one inference pass instead of a forward pass per epoch).",
    )


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
    batch_size: int = Field(32, gt=0, description="Examples per device per forward pass.")
    grad_accum: int = Field(1, gt=0, description="Forward passes accumulated per optimizer step.")
    lr: Union[Literal["auto"], float] = Field(
        "auto",
        description="Peak learning rate. auto: the strategy's (full, last-n 5e-5; contrastive 2e-5; lora 2e-3; bitfit "
        "5e-4; frozen 1e-3: the rates measured in bench/README.md), logged and saved in the run's config.",
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
        None, gt=0, description="Stop after this many evaluations without improvement."
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
    task: TaskConfig = TaskConfig()
    data: DataConfig = DataConfig()
    strategy: StrategyConfig = StrategyConfig()
    train: TrainConfig = TrainConfig()
    output: Optional[Path] = Field(
        None, description="Run directory to write (model, tokenizer, config, metrics, logs)."
    )

    @model_validator(mode="after")
    def _needs_train_data(self):
        if self.data.train is None:
            raise ValueError("data.train is required: pass --train FILE or set data.train in the YAML")
        if self.output is None:
            raise ValueError("output is required: pass --output DIR or set output in the YAML")
        return self
