"""Training speed and memory per task: transferlm beside the setup a user would otherwise pick (issue 25).

Not a timed test: figures are printed and saved as JSON. Each part runs in its own process, so peak RSS is
the part's own. Same model (the bundled MiniLM), data, batch size, learning rate, maximum length and number of
optimizer steps on both sides; throughput counts training examples per second of the training steps alone.

Tasks and their anchors:
  ner  CoNLL-2003 train: Hugging Face Trainer + DataCollatorForTokenClassification, labels on each word's first
       piece (as transformers' run_ner), length-grouped batches (its best CPU setting).
  mlm  WikiText-2 valid as 128-token blocks: Trainer + DataCollatorForLanguageModeling (15 %), as run_mlm; and
       transferlm with its old full-width output layer (every position's vocabulary logits), for the change's
       before/after.
Classification is in bench/sst2.py (--parts speed).

Usage: python bench/speed.py [--tasks ner,mlm] [--steps 40] [--json-out FILE]
Reads ../shared/data (or $TRANSFERLM_DATA); a task whose data is absent is skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TRANSFERLM_DATA", ROOT.parent / "shared" / "data"))
BATCH, LR, MAX_LENGTH = 32, 5e-5, 128
FILES = {"ner": DATA / "conll2003" / "train.txt", "mlm": DATA / "wikitext2" / "wiki.valid.raw"}


def peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def ours(task: str, steps: int, full_output_layer: bool = False) -> dict:
    import transferlm

    if full_output_layer:  # the masked-lm task before this change: the model called as is, logits everywhere
        from transferlm.tasks.base import Task
        from transferlm.tasks.masked_lm import MaskedLmTask

        MaskedLmTask.forward = Task.forward
    kind = {"ner": "ner", "mlm": "masked-lm"}[task]
    with tempfile.TemporaryDirectory() as tmp:
        config = {"model": {"name": "minilm", "max_length": MAX_LENGTH}, "task": {"type": kind},
                  "data": {"train": str(FILES[task])},
                  "train": {"batch_size": BATCH, "lr": LR, "max_steps": steps, "eval_every": 10**9,
                            "progress": False},
                  "output": str(Path(tmp) / "run")}
        s = transferlm.train(config).summary
    return {"samples_per_s": round(s.train_samples_per_s, 2), "train_s": round(s.train_seconds, 1),
            "steps": s.steps, "peak_rss_mb": peak_rss_mb()}


def _ner_dataset(tokenizer, path: Path) -> tuple[list[dict], int]:
    sentences, tokens, tags = [], [], []
    for line in path.read_text(encoding="utf-8").split("\n"):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                sentences.append((tokens, tags))
            tokens, tags = [], []
            continue
        tokens.append(fields[0])
        tags.append(fields[-1])
    if tokens:
        sentences.append((tokens, tags))
    labels = {t: i for i, t in enumerate(sorted({t for _, ts in sentences for t in ts}))}
    rows = []
    for words, word_tags in sentences:
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=MAX_LENGTH)
        previous, aligned = None, []
        for w in enc.word_ids():
            aligned.append(-100 if w is None or w == previous else labels[word_tags[w]])
            previous = w
        rows.append({**enc, "labels": aligned})
    return rows, len(labels)


def anchor(task: str, steps: int) -> dict:
    from transformers import (
        AutoModelForMaskedLM,
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
    )

    from transferlm.config import DataConfig, task_settings
    from transferlm.data.records import Record
    from transferlm.models.resolve import resolve_model
    from transferlm.tasks import build_task

    path = resolve_model("minilm").path
    tokenizer = AutoTokenizer.from_pretrained(path)
    if task == "ner":
        dataset, labels = _ner_dataset(tokenizer, FILES[task])
        model = AutoModelForTokenClassification.from_pretrained(path, num_labels=labels)
        collator = DataCollatorForTokenClassification(tokenizer)
    else:  # the very blocks transferlm trains on
        mlm = build_task(task_settings("masked-lm"), DataConfig(train=str(FILES[task])))
        records, _ = mlm.read_records(FILES[task])
        blocks = mlm.encode(tokenizer, [Record(r.text, None, None, r.line) for r in records], MAX_LENGTH).items
        dataset = [{"input_ids": b["input_ids"]} for b in blocks]
        model = AutoModelForMaskedLM.from_pretrained(path)
        collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=BATCH, learning_rate=LR, max_steps=steps,
                                 save_strategy="no", report_to=[], logging_steps=steps, seed=42, disable_tqdm=True,
                                 train_sampling_strategy="group_by_length" if task == "ner" else "random")
        began = time.perf_counter()
        metrics = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator).train().metrics
    return {"samples_per_s": round(metrics["train_samples_per_second"], 2),
            "train_s": round(metrics["train_runtime"], 1), "wall_s": round(time.perf_counter() - began, 1),
            "steps": steps, "peak_rss_mb": peak_rss_mb()}


PARTS = {"ours": lambda task, steps: ours(task, steps), "anchor": anchor,
         "ours_full_output_layer": lambda task, steps: ours(task, steps, full_output_layer=True)}


def run_part(part: str, task: str, steps: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", f"{part}:{task}", "--steps", str(steps)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        return {"error": f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="ner,mlm")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        part, task = args.child.split(":")
        print(json.dumps(PARTS[part](task, args.steps)))
        return 0
    results: dict = {"machine": {"cpus": os.cpu_count()}, "batch_size": BATCH, "lr": LR, "max_length": MAX_LENGTH,
                     "steps": args.steps}
    for task in args.tasks.split(","):
        if not FILES[task].is_file():
            print(f"SKIP {task}: {FILES[task]} not found (see shared/data/README.md)")
            continue
        parts = ["ours", "anchor"] + (["ours_full_output_layer"] if task == "mlm" else [])
        figures = {part: run_part(part, task, args.steps) for part in parts}
        if all("samples_per_s" in f for f in figures.values()):
            figures["ratio"] = round(figures["ours"]["samples_per_s"] / figures["anchor"]["samples_per_s"], 2)
        results[task] = figures
        print(json.dumps({task: figures}), flush=True)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
