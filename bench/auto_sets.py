"""The data sets of bench/auto.py (issue 23), each written once into OUTPUT/<name>/ as a config with the task and
the data only (no training settings). See bench/auto.py's docstring for what each split holds."""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TRANSFERLM_DATA", ROOT.parent / "shared" / "data"))
STS_COLUMNS = {"format": "tsv", "header": False, "quoting": False, "extra_columns": "ignore", "text_column": 5,
               "text_pair_column": 6, "label_column": 4}


def _sample_lines(source: Path, target: Path, n: int, header: bool, second: bool = False) -> Path:
    """A seeded sample of ``n`` lines; ``second``: another ``n``, disjoint from the first sample."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    head, body = (lines[:1], lines[1:]) if header else ([], lines)
    keep = sorted(random.Random(0).sample(range(len(body)), n))
    if second:
        taken = set(keep)
        keep = sorted(random.Random(1).sample([i for i in range(len(body)) if i not in taken], n))
    target.write_text("".join(head + [body[i] for i in keep]), encoding="utf-8")
    return target


def _sentences(source: Path, target: Path, start: int, stop: int | None) -> Path:
    """Sentences ``start`` to ``stop`` (None: to the end) of a CoNLL file, counted without its -DOCSTART- lines."""
    out, sentence, count = [], [], 0
    for line in source.read_text(encoding="utf-8").splitlines() + [""]:
        if line.startswith("-DOCSTART-"):
            continue
        if line.strip():
            sentence.append(line)
            continue
        if sentence:
            if start <= count and (stop is None or count < stop):
                out.extend(sentence + [""])
            count += 1
            sentence = []
    target.write_text("\n".join(out) + "\n", encoding="utf-8")
    return target


def sst2(out: Path, second: bool = False) -> dict:
    train = _sample_lines(DATA / "sst2" / "train.tsv", out / "train.tsv", 600, header=True, second=second)
    return {"train": str(train), "test": str(DATA / "sst2" / "dev.tsv"), "text_column": "sentence"}


def sst2_b(out: Path) -> dict:
    """A second SST-2 sample of 600 training rows, disjoint from the first; the same test (SST-2 dev)."""
    return sst2(out, second=True)


def conll(out: Path, train: tuple = (0, 1000), validation: tuple = (0, 1000), test: tuple | None = None) -> dict:
    """CoNLL-2003 sentences by index (start, stop); ``test`` None: all of test.txt, else sentences of valid.txt."""
    source = DATA / "conll2003"
    tests = source / "test.txt" if test is None else _sentences(source / "valid.txt", out / "test.txt", *test)
    return {"train": str(_sentences(source / "train.txt", out / "train.txt", *train)),
            "validation": str(_sentences(source / "valid.txt", out / "valid.txt", *validation)), "test": str(tests)}


def conll_b(out: Path) -> dict:
    """A second CoNLL-2003 split, disjoint from the first and from test.txt: training sentences 1,000-1,999; valid.txt
    sentences 1,000-1,999 validate and the rest of valid.txt (2,000 on) tests."""
    return conll(out, (1000, 2000), (1000, 2000), (2000, None))


def agnews(out: Path) -> dict:
    with (DATA / "ag_news" / "test.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    rng, parts = random.Random(0), {"train": [], "validation": [], "test": []}
    for label in sorted({r[0] for r in rows}):
        members = [r for r in rows if r[0] == label]
        rng.shuffle(members)
        parts["train"] += members[:8]
        parts["validation"] += members[8:16]
        parts["test"] += members[16:516]
    files = {}
    for name, part in parts.items():
        files[name] = out / f"{name}.csv"
        with files[name].open("w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows(part)
    return {**{k: str(v) for k, v in files.items()}, "header": False, "text_column": [1, 2], "label_column": 0}


def stsb(out: Path) -> dict:
    source = DATA / "stsb"
    return {"train": str(_sample_lines(source / "sts-train.csv", out / "train.csv", 1000, header=False)),
            "validation": str(source / "sts-dev.csv"), "test": str(source / "sts-test.csv"), **STS_COLUMNS}


def squad(out: Path, train: slice = slice(0, 3), validation: slice = slice(3, 5), test: slice = slice(5, 10)) -> dict:
    """SQuAD v1.1 dev split by article (disjoint: no passage is in two splits)."""
    document = json.loads((DATA / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    files = {}
    for name, articles in (("train", train), ("validation", validation), ("test", test)):
        files[name] = out / f"{name}.json"
        files[name].write_text(json.dumps({"version": "1.1", "data": document["data"][articles]}), encoding="utf-8")
    return {k: str(v) for k, v in files.items()}


def squad_b(out: Path) -> dict:
    """A second SQuAD split, disjoint from the first: articles 10-14 (1,027 questions) train, 15-16 validate, 17-23
    test (1,207 questions)."""
    return squad(out, slice(10, 15), slice(15, 17), slice(17, 24))


SETS = {"sst2": (sst2, "classification", "accuracy", DATA / "sst2" / "train.tsv"),
        "sst2-b": (sst2_b, "classification", "accuracy", DATA / "sst2" / "train.tsv"),
        "conll": (conll, "ner", "f1", DATA / "conll2003" / "train.txt"),
        "conll-b": (conll_b, "ner", "f1", DATA / "conll2003" / "train.txt"),
        "agnews": (agnews, "classification", "accuracy", DATA / "ag_news" / "test.csv"),
        "stsb": (stsb, "regression", "spearman", DATA / "stsb" / "sts-train.csv"),
        "squad": (squad, "qa", "f1", DATA / "squad" / "dev-v1.1.json"),
        "squad-b": (squad_b, "qa", "f1", DATA / "squad" / "dev-v1.1.json")}


def prepare(name: str, out: Path) -> Path | None:
    """The data set's config (task and data only: no training settings), written once."""
    make, task, _, probe = SETS[name]
    if not probe.is_file():
        print(f"{name}: {probe} not found; skipped (see ../shared/data/README.md)")
        return None
    folder = out / name
    config = folder / "data.yaml"
    if not config.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        data = make(folder)
        config.write_text(yaml.safe_dump({"task": {"type": task}, "data": data, "train": {"progress": False}}))
    return config
