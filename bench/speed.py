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
  qa   SQuAD v1.1 dev, the first 10 articles, windows of 256 with a stride of 128: Trainer with run_qa's
       windowing (overflowing tokens, answer positions from the offsets, padded to max_length as run_qa does by
       default).
  clm  SmolLM2-135M on WikiText-2 valid packed into 256-token blocks, batch 8: Trainer +
       DataCollatorForLanguageModeling(mlm=False) on the same blocks, as run_clm's group_texts packs.
Classification is in bench/sst2.py (--parts speed).

Prediction (--predict): ``Predictor.predict`` against Hugging Face ``pipeline`` on the same inputs (the same
MiniLM architecture; weights do not change the arithmetic), each batched as it does best: transferlm sorts by
length into batches of 64, the pipeline gets ``batch_size`` 32. Inputs: SST-2 dev (classification, 872), CoNLL-2003
test sentences as raw text (ner, 1,000; pipeline aggregation "simple"), SQuAD dev questions of the last 5 articles
(qa). Inputs per second: the median of 5 passes, after a warm-up on the first 16.

Usage: python bench/speed.py [--tasks ner,mlm,qa,clm] [--steps 40] [--json-out FILE]
Reads ../shared/data (or $TRANSFERLM_DATA); a task whose data is absent is skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TRANSFERLM_DATA", ROOT.parent / "shared" / "data"))
BATCH, LR, MAX_LENGTH = 32, 5e-5, 128
FILES = {"ner": DATA / "conll2003" / "train.txt", "mlm": DATA / "wikitext2" / "wiki.valid.raw",
         "qa": DATA / "squad" / "dev-v1.1.json", "clm": DATA / "wikitext2" / "wiki.valid.raw"}
KIND = {"ner": "ner", "mlm": "masked-lm", "qa": "qa", "clm": "causal-lm"}
MODEL = {"clm": "smollm2"}  # the others: minilm
LENGTH = {"qa": 256, "clm": 256}  # the others: MAX_LENGTH
BATCHES = {"clm": 8}  # the others: BATCH


def _qa_file(tmp: Path) -> Path:
    document = json.loads(FILES["qa"].read_text(encoding="utf-8"))
    target = tmp / "train.json"
    target.write_text(json.dumps({"version": "1.1", "data": document["data"][:10]}), encoding="utf-8")
    return target


def peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def ours(task: str, steps: int, full_output_layer: bool = False) -> dict:
    import transferlm

    if full_output_layer:  # the masked-lm task before this change: the model called as is, logits everywhere
        from transferlm.tasks.base import Task
        from transferlm.tasks.masked_lm import MaskedLmTask

        MaskedLmTask.forward = Task.forward
    with tempfile.TemporaryDirectory() as tmp:
        train = _qa_file(Path(tmp)) if task == "qa" else FILES[task]
        config = {"model": {"name": MODEL.get(task, "minilm"), "max_length": LENGTH.get(task, MAX_LENGTH)},
                  "task": {"type": KIND[task]}, "data": {"train": str(train)},
                  "train": {"batch_size": BATCHES.get(task, BATCH), "lr": LR, "max_steps": steps,
                            "eval_every": 10**9, "progress": False},
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


def _qa_dataset(tokenizer, path: Path) -> list[dict]:
    """run_qa's prepare_train_features: windows with overflow, answers located through the offsets."""
    questions, contexts, answers = [], [], []
    for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                questions.append(qa["question"].lstrip())
                contexts.append(paragraph["context"])
                answers.append(qa["answers"][0])
    enc = tokenizer(questions, contexts, truncation="only_second", max_length=LENGTH["qa"], stride=128,
                    return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
    rows = []
    for i, offsets in enumerate(enc["offset_mapping"]):
        answer = answers[enc["overflow_to_sample_mapping"][i]]
        start_char = answer["answer_start"]
        end_char = start_char + len(answer["text"])
        sequence = enc.sequence_ids(i)
        context = [j for j, s in enumerate(sequence) if s == 1]
        start = end = 0  # the CLS token: the answer is not in this window
        if offsets[context[0]][0] <= start_char and offsets[context[-1]][1] >= end_char:
            start = next(j for j in context if offsets[j][1] > start_char)
            end = next(j for j in reversed(context) if offsets[j][0] < end_char)
        rows.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                     "token_type_ids": enc["token_type_ids"][i], "start_positions": start, "end_positions": end})
    return rows


def anchor(task: str, steps: int) -> dict:
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        AutoModelForQuestionAnswering,
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

    path = resolve_model(MODEL.get(task, "minilm")).path
    tokenizer = AutoTokenizer.from_pretrained(path)
    if task == "qa":
        with tempfile.TemporaryDirectory() as tmp:
            dataset = _qa_dataset(tokenizer, _qa_file(Path(tmp)))
        model = AutoModelForQuestionAnswering.from_pretrained(path)
        collator = None  # every window is already max_length
    elif task == "clm":  # the very blocks transferlm packs
        clm = build_task(task_settings("causal-lm"), DataConfig(train=str(FILES[task])))
        records, _ = clm.read_records(FILES[task])
        blocks = clm.encode(tokenizer, records, LENGTH[task]).items
        dataset = [{"input_ids": b["input_ids"]} for b in blocks]
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(path)
        collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    elif task == "ner":
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
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=BATCHES.get(task, BATCH), learning_rate=LR,
                                 max_steps=steps,
                                 save_strategy="no", report_to=[], logging_steps=steps, seed=42, disable_tqdm=True,
                                 train_sampling_strategy="group_by_length" if task == "ner" else "random")
        began = time.perf_counter()
        metrics = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator).train().metrics
    return {"samples_per_s": round(metrics["train_samples_per_second"], 2),
            "train_s": round(metrics["train_runtime"], 1), "wall_s": round(time.perf_counter() - began, 1),
            "steps": steps, "peak_rss_mb": peak_rss_mb()}


PREDICT_TASKS = ("classification", "ner", "qa")


def _predict_inputs(task: str) -> list:
    if task == "classification":
        lines = (DATA / "sst2" / "dev.tsv").read_text(encoding="utf-8").split("\n")[1:]
        return [line.split("\t")[0] for line in lines if line.strip()]
    if task == "ner":
        sentences, words = [], []
        for line in (DATA / "conll2003" / "test.txt").read_text(encoding="utf-8").split("\n"):
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                if words:
                    sentences.append(" ".join(words))
                words = []
            else:
                words.append(fields[0])
        return sentences[:1000]
    document = json.loads(FILES["qa"].read_text(encoding="utf-8"))
    return [{"question": qa["question"], "context": paragraph["context"]}
            for article in document["data"][-5:] for paragraph in article["paragraphs"] for qa in paragraph["qas"]]


ROUNDS = 5  # timed passes over the inputs; the median is reported (one pass is a few seconds: noisy here)


def _timed(predict, inputs: list) -> dict:
    predict(inputs[:16])  # warm-up
    seconds = []
    for _ in range(ROUNDS):
        began = time.perf_counter()
        outputs = predict(inputs)
        seconds.append(time.perf_counter() - began)
        assert len(outputs) == len(inputs)
    median = statistics.median(seconds)
    return {"inputs": len(inputs), "rounds": ROUNDS, "median_seconds": round(median, 2),
            "inputs_per_s": round(len(inputs) / median, 1), "all_seconds": [round(x, 2) for x in seconds],
            "peak_rss_mb": peak_rss_mb()}


def predict_run(task: str, out: Path) -> dict:
    """A run of the task to predict with (one training step: the weights do not change the arithmetic), made in a
    process of its own so that the prediction's peak RSS is prediction's alone."""
    import transferlm

    train = {"classification": DATA / "sst2" / "dev.tsv", "ner": FILES["ner"], "qa": _qa_file(out)}[task]
    data = {"train": str(train), **({"text_column": "sentence"} if task == "classification" else {})}
    config = {"model": {"name": "minilm", "max_length": 256 if task == "qa" else MAX_LENGTH},
              "task": {"type": task}, "data": data,
              "train": {"max_steps": 1, "eval_every": 10**9, "progress": False}, "output": str(out / "run")}
    return {"run": str(transferlm.train(config).run_dir)}


def predict_ours(task: str, run: str) -> dict:
    import transferlm

    return _timed(transferlm.load(run).predict, _predict_inputs(task))


def predict_pipeline(task: str, _run: str) -> dict:
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
        pipeline,
    )

    from transferlm.models.resolve import resolve_model

    path = resolve_model("minilm").path
    tokenizer = AutoTokenizer.from_pretrained(path)
    if task == "classification":
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        run = pipeline("text-classification", model=model, tokenizer=tokenizer, batch_size=32)
        return _timed(lambda xs: run(xs, truncation=True, max_length=MAX_LENGTH), _predict_inputs(task))
    if task == "ner":
        model = AutoModelForTokenClassification.from_pretrained(path, num_labels=9)
        run = pipeline("token-classification", model=model, tokenizer=tokenizer, batch_size=32,
                       aggregation_strategy="simple")
        return _timed(run, _predict_inputs(task))
    from transformers.pipelines import SUPPORTED_TASKS

    if "question-answering" not in SUPPORTED_TASKS:  # transformers 5 removed it (its migration guide)
        return {"unavailable": "transformers has no question-answering pipeline (removed in version 5)"}
    model = AutoModelForQuestionAnswering.from_pretrained(path)
    run = pipeline("question-answering", model=model, tokenizer=tokenizer, batch_size=32)
    return _timed(lambda xs: run(xs, max_seq_len=256, doc_stride=128), _predict_inputs(task))


PARTS = {"ours": lambda task, steps: ours(task, int(steps)), "anchor": lambda task, steps: anchor(task, int(steps)),
         "ours_full_output_layer": lambda task, steps: ours(task, int(steps), full_output_layer=True),
         "predict_run": lambda task, out: predict_run(task, Path(out)), "predict_ours": predict_ours,
         "predict_pipeline": predict_pipeline}


def run_part(part: str, task: str, argument: int | str) -> dict:
    """One part in a process of its own; ``argument``: the step count, or for prediction the run directory."""
    done = subprocess.run([sys.executable, __file__, "--child", f"{part}:{task}", "--argument", str(argument)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        return {"error": f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="ner,mlm,qa,clm")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--predict", default="",
                        help=f"Also compare prediction for these tasks (of {', '.join(PREDICT_TASKS)}).")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--argument", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        part, task = args.child.split(":")
        print(json.dumps(PARTS[part](task, args.argument)))
        return 0
    results: dict = {"machine": {"cpus": os.cpu_count()}, "batch_size": BATCH, "lr": LR, "max_length": MAX_LENGTH,
                     "steps": args.steps}
    for task in filter(None, args.predict.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            made = run_part("predict_run", task, tmp)
            figures = {part: run_part(part, task, made.get("run", "")) for part in ("predict_ours", "predict_pipeline")}
        if all("inputs_per_s" in f for f in figures.values()):
            ours_rate, theirs = figures["predict_ours"]["inputs_per_s"], figures["predict_pipeline"]["inputs_per_s"]
            figures["ratio"] = round(ours_rate / theirs, 2)
        results[f"predict-{task}"] = figures
        print(json.dumps({f"predict-{task}": figures}), flush=True)
    for task in filter(None, args.tasks.split(",")):
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
