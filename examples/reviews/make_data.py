"""Generate the bundled example data: short product reviews labelled positive / negative / neutral.

Phrases were written for this project; the script composes them with a fixed seed so the
files are reproducible (`python examples/reviews/make_data.py`). Some reviews are deliberately
mixed or hedged, so the task is not solvable from a single keyword.
"""

import csv
import random
from pathlib import Path

PRODUCTS = ["headphones", "blender", "backpack", "phone case", "desk lamp", "coffee grinder", "running shoes",
            "keyboard", "water bottle", "rain jacket", "air fryer", "monitor stand", "tent", "e-reader", "kettle"]
ASPECTS = ["battery life", "build quality", "price", "sound", "fit", "setup", "design", "noise level",
           "packaging", "customer service", "weight", "materials"]
POSITIVE = ["is excellent", "exceeded my expectations", "works perfectly", "feels really solid",
            "is worth every penny", "made my mornings better", "is a joy to use", "is far better than my old one",
            "impressed the whole family", "holds up great after months", "is surprisingly good"]
NEGATIVE = ["broke within a week", "is a waste of money", "stopped working after two days", "feels cheap and flimsy",
            "was a huge disappointment", "is far worse than advertised", "drove me crazy", "is simply awful",
            "fell apart on the first trip", "is not worth the price", "was returned the same day"]
# Negated and second-hand phrasings: keyword matching gets these wrong.
POSITIVE_TWISTED = ["is not bad at all", "never let me down", "was not the disaster some reviews claimed",
                    "did not disappoint", "has no real flaws"]
NEGATIVE_TWISTED = ["is not good", "never worked properly", "was not worth the excellent reviews",
                    "did not live up to the hype", "is nowhere near great"]
NEUTRAL_TWISTED = ["was reviewed in a magazine last week", "is described as excellent on the box",
                   "is the model my friend called awful", "was mentioned in a news story about recalls"]
NEUTRAL = ["arrived on Tuesday", "comes in grey and blue", "is about the size of a book", "was ordered for my brother",
           "ships in a cardboard box", "has a two-year warranty", "uses a standard USB-C cable",
           "is sold in three sizes", "was delivered by courier", "came with a printed manual"]
POS_OPENERS = ["Honestly, the", "I love it: the", "Great buy. The", "Five stars, the", "Really happy, the", "The"]
NEG_OPENERS = ["Sadly, the", "Avoid this one. The", "One star: the", "Very unhappy, the", "Do not buy. The", "The"]
NEU_OPENERS = ["For reference, the", "Note: the", "FYI the", "Just so you know, the", "The"]
CONTRAST = {"positive": ["though the {a} could be better", "even if the {a} is only average"],
            "negative": ["although the {a} is fine", "even though the {a} looked nice"]}


def review(rng: random.Random, label: str) -> str:
    product, aspect = rng.choice(PRODUCTS), rng.choice(ASPECTS)
    twisted = rng.random() < 0.25
    if label == "neutral":
        return f"{rng.choice(NEU_OPENERS)} {product} {rng.choice(NEUTRAL_TWISTED if twisted else NEUTRAL)}."
    opener = rng.choice(["The", "Well, the", "So the"] if twisted else POS_OPENERS if label == "positive" else NEG_OPENERS)
    if label == "positive":
        phrase = rng.choice(POSITIVE_TWISTED if twisted else POSITIVE)
    else:
        phrase = rng.choice(NEGATIVE_TWISTED if twisted else NEGATIVE)
    subject = rng.choice([product, f"{aspect} of this {product}"])
    text = f"{opener} {subject} {phrase}"
    if rng.random() < 0.35:
        other = rng.choice([a for a in ASPECTS if a != aspect])
        text += ", " + rng.choice(CONTRAST[label]).format(a=other)
    return text + "."


def write(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    labels = ["positive", "negative", "neutral"]
    rows = [(review(rng, label), label) for label in labels for _ in range(n // 3)]
    rng.shuffle(rows)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


if __name__ == "__main__":
    here = Path(__file__).parent
    write(here / "train.csv", 240, seed=1)
    write(here / "dev.csv", 60, seed=2)
    write(here / "test.csv", 60, seed=3)
