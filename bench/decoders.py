"""GPT-style transfer benchmark (issue 9): SmolLM2 and MiniLM on the shared data; figures printed and saved as JSON.

Parts (each training run in its own process, so peak RSS is that run's):
  wikitext  SmolLM2 sliding-window perplexity on wiki.test.raw before and after `adapt` (LoRA, merged) on
            wiki.valid.raw, same protocol both times. Target: >= 15 % lower.
  gptqa     SmolLM2 answers SQuAD v1.1 questions by generation from their context, zero-shot vs after a LoRA chat
            fine-tune on paragraphs of the training articles of bench/squad.py's article-disjoint split (one
            conversation per paragraph: the first user turn carries the context, each question is a turn). The
            evaluation questions are a seeded sample of the split's test articles. Target: +15 F1.
  sst2      SmolLM2 (LoRA) vs MiniLM (full) classification on the same 5,000-example SST-2 train subset;
            a further 500 train sentences select checkpoints, dev (872) is the test; time and peak RSS.
  mlm       MiniLM `adapt` (masked-LM) on the SST-2 training sentences (labels unused), then 64 labels per
            class (and 64 per class for validation) from train: dev accuracy with and without adaptation,
            3 seeds.

CPU costs (2 cores, AVX2): SmolLM2 LoRA trains at ~100-150 tokens/s in fp32 (bf16 autocast was ~30x slower here:
no native bfloat16), so the SmolLM2 budgets below (--adapt-steps, --qa-paragraphs, --test-chars) are what
fits; each is saved with its figure.

Usage: python bench/decoders.py [--parts wikitext,gptqa,sst2,mlm] [--out runs/bench-decoders]
Reads ../shared/data (or $TRANSFERLM_DATA); a part whose data is absent is skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TRANSFERLM_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from squad import SPLIT as SQUAD_SPLIT  # noqa: E402  (one definition of the article-disjoint split)

QA_INSTRUCTION = "Answer the question with a short phrase copied from the context."


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM): unlike ru_maxrss it starts afresh at exec, so a spawned child
    does not inherit its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource  # (not Linux: the rusage figure, an upper bound)

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(queue, function, kwargs) -> None:
    import logging
    import traceback

    logging.basicConfig(level=logging.INFO, format="transferlm: %(message)s")
    began = time.perf_counter()
    try:
        result = function(**kwargs)
    except BaseException:
        queue.put({"error": traceback.format_exc()})
        raise
    queue.put({**result, "wall_s": round(time.perf_counter() - began, 1), "peak_rss_mb": round(peak_rss_mb(), 1)})


def isolated(function, **kwargs) -> dict[str, Any]:
    """``function(**kwargs)`` in a fresh process: its own peak RSS, and no memory carried between runs. A
    failure in the child (an exception, or a kill such as the OOM killer's) stops the benchmark with it."""
    import queue as queues

    context = multiprocessing.get_context("spawn")
    channel = context.Queue()
    process = context.Process(target=_child, args=(channel, function, kwargs))
    process.start()
    while True:
        try:
            result = channel.get(timeout=5)
            break
        except queues.Empty:
            if not process.is_alive():
                died = f"{function.__name__}: the child process died (exit code {process.exitcode})"
                raise SystemExit(died) from None
    process.join()
    if "error" in result:
        raise SystemExit(f"{function.__name__} failed in its child process:\n{result['error']}")
    return result


def train_run(config: dict, adapt: bool = False) -> dict[str, Any]:
    import transferlm

    result = (transferlm.adapt if adapt else transferlm.train)(config, overwrite=True)
    s = result.summary
    return {"run_dir": str(result.run_dir), "validation": s.validation, "test": result.test, "steps": s.steps,
            "best_step": s.best_step, "train_s": s.train_seconds, "train_samples_per_s": s.train_samples_per_s}


# --- wikitext ---

def head_of(path: Path, chars: int | None) -> str:
    text = path.read_text(encoding="utf-8")
    if chars is None or chars >= len(text):
        return text
    return text[: text.rfind("\n", 0, chars) + 1]  # whole lines


def measure_perplexity(model: str, text_path: str, chars: int | None, context: int, stride: int) -> dict[str, Any]:
    from transferlm.evaluation.perplexity import PerplexitySettings, perplexity
    from transferlm.generation import load_causal_lm

    lm, tokenizer = load_causal_lm(model)
    settings = PerplexitySettings(context=context, stride=stride)
    result = perplexity(lm, tokenizer, head_of(Path(text_path), chars), settings)
    return {**result.to_dict(), "protocol": result.protocol()}


def part_wikitext(out: Path, args) -> dict[str, Any]:
    test, valid = DATA / "wikitext2" / "wiki.test.raw", DATA / "wikitext2" / "wiki.valid.raw"
    protocol = dict(text_path=str(test), chars=args.test_chars, context=args.context, stride=args.stride)
    before = isolated(measure_perplexity, model="smollm2", **protocol)
    print("before:", before["protocol"], "perplexity", round(before["perplexity"], 3), flush=True)
    config = {
        "model": {"name": "smollm2", "max_length": args.block},
        "data": {"train": str(valid), "validation_split": 0.02},
        "strategy": {"name": "lora", "r": 16, "alpha": 32, "dropout": 0.05,
                                              "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                 "gate_proj", "up_proj", "down_proj"]},
        "train": {"max_steps": args.adapt_steps, "batch_size": 8, "lr": args.adapt_lr, "warmup_ratio": 0.05,
                  "eval_every": args.adapt_steps, "progress": False},
        "output": str(out / "wikitext-adapted"),
    }
    adapted = isolated(train_run, config=config, adapt=True)
    after = isolated(measure_perplexity, model=adapted["run_dir"], **protocol)
    print("after:", after["protocol"], "perplexity", round(after["perplexity"], 3), flush=True)
    reduction = 1 - after["perplexity"] / before["perplexity"]
    return {"part": "wikitext", "before": before, "adapt": {**adapted, "config": config}, "after": after,
            "reduction_percent": round(100 * reduction, 2), "target_met": reduction >= 0.15,
            "adapt_tokens": args.adapt_steps * 8 * args.block}


# --- gptqa ---

def squad_articles() -> list[dict]:
    return json.loads((DATA / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]


def qa_prompt(context: str, question: str) -> str:
    return f"{QA_INSTRUCTION}\n\nContext: {context}\n\nQuestion: {question}"


def qa_conversations(articles: list[dict], paragraphs: int, max_questions: int, seed: int) -> list[dict]:
    """One chat per paragraph: the context and first question, then each further question as a turn."""
    # Contexts up to 1,600 characters (~350 tokens; 97 % of them): a conversation fits model.max_length 768.
    pool = [p for article in articles for p in article["paragraphs"] if len(p["context"]) <= 1600]
    rows = []
    for paragraph in random.Random(seed).sample(pool, min(paragraphs, len(pool))):
        messages = []
        for i, qa in enumerate(paragraph["qas"][:max_questions]):
            question = qa_prompt(paragraph["context"], qa["question"]) if i == 0 else f"Question: {qa['question']}"
            messages += [{"role": "user", "content": question},
                         {"role": "assistant", "content": qa["answers"][0]["text"]}]
        rows.append({"messages": messages})
    return rows


def qa_questions(articles: list[dict], n: int, seed: int) -> list[dict]:
    pool = [{"context": p["context"], "question": qa["question"], "golds": [a["text"] for a in qa["answers"]]}
            for article in articles for p in article["paragraphs"] for qa in p["qas"]]
    return random.Random(seed).sample(pool, min(n, len(pool)))


def answer_questions(model: str, questions: list[dict], max_new_tokens: int) -> dict[str, Any]:
    from transferlm.evaluation.qa import squad_metrics
    from transferlm.generation import GenerationSettings, Generator

    generator = Generator.from_model(model)
    settings = GenerationSettings(max_new_tokens=max_new_tokens, stop=("\n",))
    began = time.perf_counter()
    answers = [generator.generate([qa_prompt(q["context"], q["question"])], settings, chat=True)[0]["text"].strip()
               for q in questions]
    seconds = time.perf_counter() - began
    metrics = squad_metrics(answers, [q["golds"] for q in questions])
    return {"metrics": metrics, "seconds_per_question": round(seconds / len(questions), 2),
            "examples": [{"question": q["question"], "golds": q["golds"], "answer": a}
                         for q, a in zip(questions[:8], answers[:8], strict=True)]}


def part_gptqa(out: Path, args) -> dict[str, Any]:
    articles = squad_articles()
    part = {name: articles[a:b] for name, (a, b) in SQUAD_SPLIT.items()}
    questions = qa_questions(part["test"], args.qa_questions, seed=0)
    zero_shot = isolated(answer_questions, model="smollm2", questions=questions, max_new_tokens=args.qa_new_tokens)
    print("zero-shot:", json.dumps(zero_shot["metrics"]), flush=True)
    files = {}
    for name, count, seed in (("train", args.qa_paragraphs, 1), ("validation", 24, 2)):
        rows = qa_conversations(part[name], count, args.qa_turns, seed)
        files[name] = out / "gptqa" / f"{name}.jsonl"
        files[name].parent.mkdir(parents=True, exist_ok=True)
        files[name].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = {
        "model": {"name": "smollm2", "max_length": 768},
        "task": {"type": "causal-lm"},
        "data": {"train": str(files["train"]), "validation": str(files["validation"])},
        "strategy": {"name": "lora", "r": 16, "alpha": 32, "dropout": 0.05, "merge": True,
                                              "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                 "gate_proj", "up_proj", "down_proj"]},
        "train": {"epochs": 1, "batch_size": 4, "lr": args.qa_lr, "warmup_ratio": 0.05,
                  "progress": False},
        "output": str(out / "gptqa-finetuned"),
    }
    tuned = isolated(train_run, config=config)
    after = isolated(answer_questions, model=tuned["run_dir"], questions=questions, max_new_tokens=args.qa_new_tokens)
    print("fine-tuned:", json.dumps(after["metrics"]), flush=True)
    gain = after["metrics"]["f1"] - zero_shot["metrics"]["f1"]
    return {"part": "gptqa", "questions": len(questions), "train_conversations": args.qa_paragraphs,
            "zero_shot": zero_shot, "fine_tune": {**tuned, "config": config}, "fine_tuned": after,
            "f1_gain_points": round(100 * gain, 2), "target_met": gain >= 0.15}


# --- sst2 ---

def sst2_rows(name: str) -> list[dict]:
    import csv

    with open(DATA / "sst2" / f"{name}.tsv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def write_tsv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["sentence\tlabel"] + [f"{r['sentence'].strip()}\t{r['label']}" for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def part_sst2(out: Path, args) -> dict[str, Any]:
    rows = sst2_rows("train")
    random.Random(0).shuffle(rows)
    n = args.sst2_train
    train = write_tsv(out / "sst2" / f"train-{n}.tsv", rows[:n])
    validation = write_tsv(out / "sst2" / "validation-500.tsv", rows[n:n + 500])
    data = {"train": str(train), "validation": str(validation), "test": str(DATA / "sst2" / "dev.tsv"),
            "text_column": "sentence"}
    members = {
        "smollm2-lora": {"model": {"name": "smollm2", "max_length": 64},
                         "strategy": {"name": "lora", "r": 16, "alpha": 32},
                         "train": {"epochs": 1, "batch_size": 16, "lr": 1e-3, "progress": False}},
        "minilm-full": {"model": {"name": "minilm", "max_length": 64}, "task": {"pooling": "mean"},
                        "strategy": {"name": "full"},
                        "train": {"epochs": 2, "batch_size": 32, "lr": 1e-4, "progress": False}},
    }
    results = {}
    for name, member in members.items():
        config = {**member, "data": data, "output": str(out / f"sst2-{name}")}
        results[name] = isolated(train_run, config=config)
        print(name, "dev accuracy", results[name]["test"]["accuracy"], f"{results[name]['train_s']:.0f} s",
              f"{results[name]['peak_rss_mb']:.0f} MB", flush=True)
    return {"part": "sst2", "train_examples": n, "members": results}


# --- mlm ---

def part_mlm(out: Path, args) -> dict[str, Any]:
    rows = sst2_rows("train")
    sentences = out / "mlm" / "sst2-train-sentences.txt"
    sentences.parent.mkdir(parents=True, exist_ok=True)
    sentences.write_text("".join(r["sentence"].strip() + "\n" for r in rows if r["sentence"].strip()),
                         encoding="utf-8")
    adapt_config = {
        "model": {"name": "minilm", "max_length": 128},
        "data": {"train": str(sentences), "documents": "lines", "validation_split": 0.01},
        "task": {"whole_word_mask": args.whole_word},
        "train": {"epochs": args.mlm_epochs, "batch_size": 32, "lr": args.mlm_lr, "warmup_ratio": 0.06,
                  "progress": False},
        "output": str(out / "mlm-adapted"),
    }
    adapted = isolated(train_run, config=adapt_config, adapt=True)
    print("adapted:", json.dumps(adapted["validation"]), flush=True)
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    seeds = {}
    for seed in range(3):
        rng = random.Random(seed)
        picked = {label: rng.sample(group, 128) for label, group in sorted(by_label.items())}
        train = write_tsv(out / "mlm" / f"train-64-seed{seed}.tsv", [r for g in picked.values() for r in g[:64]])
        validation = write_tsv(out / "mlm" / f"validation-64-seed{seed}.tsv",
                               [r for g in picked.values() for r in g[64:]])
        seeds[seed] = {}
        for name, model in (("minilm", "minilm"), ("minilm-adapted", adapted["run_dir"])):
            config = {"model": {"name": model, "max_length": 64}, "task": {"pooling": "mean"},
                      "data": {"train": str(train), "validation": str(validation),
                               "test": str(DATA / "sst2" / "dev.tsv"), "text_column": "sentence"},
                      "train": {"epochs": 8, "batch_size": 16, "lr": 1e-4, "seed": seed, "progress": False},
                      "output": str(out / f"mlm-{name}-seed{seed}")}
            result = isolated(train_run, config=config)
            seeds[seed][name] = result["test"]["accuracy"]
            print(f"seed {seed} {name}: dev accuracy {result['test']['accuracy']:.4f}", flush=True)
    mean = {name: sum(s[name] for s in seeds.values()) / len(seeds) for name in ("minilm", "minilm-adapted")}
    return {"part": "mlm", "adapt": {**adapted, "config": adapt_config}, "dev_accuracy_by_seed": seeds,
            "dev_accuracy_mean": mean, "gain_points": round(100 * (mean["minilm-adapted"] - mean["minilm"]), 2)}


PARTS = {"wikitext": (part_wikitext, "wikitext2/wiki.test.raw"), "gptqa": (part_gptqa, "squad/dev-v1.1.json"),
         "sst2": (part_sst2, "sst2/train.tsv"), "mlm": (part_mlm, "sst2/train.tsv")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="wikitext,gptqa,sst2,mlm")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-decoders"))
    parser.add_argument("--test-chars", type=int, default=200_000,
                        help="wikitext: score the first N characters of wiki.test.raw (whole lines); 0: all")
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--stride", type=int, default=256)
    parser.add_argument("--block", type=int, default=256, help="wikitext: adapt block length (tokens)")
    parser.add_argument("--adapt-steps", type=int, default=30, help="wikitext: adapt steps of 8 blocks")
    parser.add_argument("--adapt-lr", type=float, default=5e-4)
    parser.add_argument("--qa-questions", type=int, default=500)
    parser.add_argument("--qa-paragraphs", type=int, default=160, help="gptqa: training conversations")
    parser.add_argument("--qa-turns", type=int, default=5, help="gptqa: questions per training conversation")
    parser.add_argument("--qa-lr", type=float, default=5e-4)
    parser.add_argument("--qa-new-tokens", type=int, default=16)
    parser.add_argument("--sst2-train", type=int, default=5000, help="sst2: training examples")
    parser.add_argument("--mlm-epochs", type=float, default=0.3)
    parser.add_argument("--mlm-lr", type=float, default=1e-4)
    parser.add_argument("--whole-word", action="store_true", help="mlm: whole-word masking")
    args = parser.parse_args()
    args.test_chars = args.test_chars or None
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for name in args.parts.split(","):
        function, needed = PARTS[name]
        if not (DATA / needed).is_file():
            print(f"{name}: {DATA / needed} not found; set TRANSFERLM_DATA or see ../shared/data/README.md. Skipping.")
            continue
        began = time.perf_counter()
        result = function(args.out, args)
        result["part_wall_s"] = round(time.perf_counter() - began, 1)
        results[name] = result
        results_path.write_text(json.dumps(results, indent=2, default=str))  # each part saved as it ends
        print(json.dumps({k: v for k, v in result.items() if k not in ("adapt", "fine_tune")}, indent=2,
                         default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
