"""Shared fixtures: tiny random models (BERT, Llama, GPT-2) saved as local HF directories, and small data files."""

from __future__ import annotations

import csv
import json
import random
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

POSITIVE = ["great", "good", "lovely", "superb", "fine", "happy", "excellent", "fun"]
NEGATIVE = ["bad", "awful", "poor", "boring", "sad", "terrible", "dull", "ugly"]
FILLER = ["the", "film", "was", "really", "plot", "acting", "very", "a", "story", "and", "quite", "music"]
SPORT = ["match", "goal", "team", "score"]
MONEY = ["bank", "market", "price", "stock"]
DATA_ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def sentence(rng: random.Random, label: str) -> str:
    words = rng.sample(FILLER, 4) + [rng.choice(POSITIVE if label == "pos" else NEGATIVE)]
    rng.shuffle(words)
    return " ".join(words)


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sentiment_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"text": sentence(rng, label), "label": label} for label in ("pos", "neg") for _ in range(n // 2)]


def scored_pairs(n: int, seed: int) -> list[dict]:
    """Pairs of sentiment rows scored 1 where their sentiment agrees, else 0."""
    rows = sentiment_rows(n, seed)  # positive rows, then negative ones: each paired with one a third further on
    others = rows[n // 3:] + rows[:n // 3]
    return [{"text": a["text"], "text_pair": b["text"], "label": float(a["label"] == b["label"])}
            for a, b in zip(rows, others, strict=True)]


def ner_rows(n: int, seed: int) -> list[dict]:
    """Token/tag rows: money words are organisations (two in a row: one entity), sport words locations."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        tokens, tags = [], []
        for _ in range(rng.randint(4, 9)):
            kind = rng.random()
            if kind < 0.2:
                tokens += rng.sample(MONEY, 2)
                tags += ["B-ORG", "I-ORG"]
            elif kind < 0.4:
                tokens.append(rng.choice(SPORT))
                tags.append("B-LOC")
            else:
                tokens.append(rng.choice(FILLER))
                tags.append("O")
        rows.append({"tokens": tokens, "tags": tags})
    return rows


def qa_rows(n: int, seed: int, words: tuple[int, int] = (6, 12)) -> list[dict]:
    """Question/context/answers rows: the answer is the context's market word, asked about with filler words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        context_words = [rng.choice(FILLER + POSITIVE) for _ in range(rng.randint(*words))]
        at = rng.randrange(len(context_words) + 1)
        answer = rng.choice(MONEY)
        context_words.insert(at, answer)
        context = " ".join(context_words)
        start = len(" ".join(context_words[:at])) + (1 if at else 0)
        rows.append({"id": f"q{seed}-{i}", "question": " ".join(rng.sample(FILLER, 2)), "context": context,
                     "answers": [{"text": answer, "answer_start": start}]})
    return rows


def make_tiny_bert(root: Path, dropout: float = 0.1) -> Path:
    """A 2-layer, 32-dim BERT with random weights and a WordPiece vocab covering the fixture words."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    root.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(POSITIVE + NEGATIVE + FILLER + SPORT + MONEY))
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(root)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(root)
    return root


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }}<|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)


def make_tiny_decoder(root: Path, arch: str, dropout: float = 0.0, chat_template: bool = True) -> Path:
    """A 2-layer, 32-dim causal LM with random weights (``llama`` or ``gpt2``) and a word-level tokenizer over
    the fixture words, with ChatML-style special tokens and no pad token (as most decoders ship)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    root.mkdir(parents=True, exist_ok=True)
    special = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    words = special + sorted(set(POSITIVE + NEGATIVE + FILLER + SPORT + MONEY + ["user", "assistant", "system"]))
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", eos_token="<|im_end|>" if chat_template else "<|endoftext|>",
        bos_token="<|endoftext|>", additional_special_tokens=special[2:],
        model_input_names=["input_ids", "attention_mask"],
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(root)
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    if arch == "llama":
        config = LlamaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                             tie_word_embeddings=True, bos_token_id=1, eos_token_id=eos, attention_dropout=dropout)
        LlamaForCausalLM(config).save_pretrained(root)
    elif arch == "gpt2":
        config = GPT2Config(vocab_size=len(words), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                            bos_token_id=1, eos_token_id=eos, resid_pdrop=dropout, embd_pdrop=dropout,
                            attn_pdrop=dropout)
        GPT2LMHeadModel(config).save_pretrained(root)
    else:
        raise ValueError(arch)
    return root


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return make_tiny_decoder(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    return make_tiny_decoder(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_model_no_dropout(tmp_path_factory) -> Path:
    """Without dropout, runs that split the same batch differently must agree exactly."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert-nodrop"), dropout=0.0)


@pytest.fixture()
def sentiment_files(tmp_path) -> dict[str, Path]:
    return {
        "train": write_csv(tmp_path / "train.csv", sentiment_rows(40, seed=1)),
        "dev": write_csv(tmp_path / "dev.csv", sentiment_rows(12, seed=2)),
        "test": write_csv(tmp_path / "test.csv", sentiment_rows(12, seed=3)),
    }


def sentence_encoder(model_dir: Path, path: Path) -> Path:
    """A copy of ``model_dir`` that says it was trained as a sentence-embedding model (a sentence-transformers
    ``modules.json`` with a mean-pooling module), as all-MiniLM-L6-v2 does."""
    shutil.copytree(model_dir, path)
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return path


def tiny_config(model_dir: Path, files: dict[str, Path], output: Path, **train) -> dict:
    """Config dict for a fast run of the tiny model."""
    settings = {"epochs": 2, "batch_size": 8, "lr": 1e-2, "warmup_ratio": 0.1, "progress": False, **train}
    return {
        "model": {"name": str(model_dir), "max_length": 32},
        "data": {"train": str(files["train"]), "validation": str(files["dev"])},
        "train": settings,
        "output": str(output),
    }


@pytest.fixture()
def shared_data() -> Path:
    if not DATA_ROOT.is_dir():
        pytest.skip(f"shared data sets not found at {DATA_ROOT} (see shared/data/README.md)")
    return DATA_ROOT


@pytest.fixture(autouse=True, scope="session")
def _quiet_transformers():
    # The load report lists the new head as "missing": expected whenever a head is added.
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@contextmanager
def interrupted_after(steps: int):
    """Within the block, the training loop raises KeyboardInterrupt (a Ctrl-C) once ``steps`` optimizer steps are
    done: the checkpoints written so far are what a resumed run starts from."""
    from transferlm.training.loop import TrainingLoop

    original = TrainingLoop._step

    def step(self, *args, **kwargs):
        if self.state.step == steps:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    TrainingLoop._step = step
    try:
        yield
    finally:
        TrainingLoop._step = original
