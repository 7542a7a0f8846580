"""What ``train.lr``, ``train.batch_size`` and ``train.epochs`` resolve to when ``auto``: the strategy's defaults,
refined per task, model kind and data size by rules measured in ``bench/auto.py`` (bench/README.md, "auto").

A rule names what it applies to (None: anything) and what it changes; for each of the three settings, the first
rule that matches a run and sets it decides. Each rule says the measurement it comes from, and the run's log and
saved config say which rule chose.
"""

from __future__ import annotations

from dataclasses import dataclass

from transferlm.strategies.base import DEFAULT_BUDGET, EpochBudget

FULL_WEIGHTS = ("full", "last-n")  # strategies that update the encoder's own weights at the full-model rate


@dataclass(frozen=True)
class Rule:
    evidence: str  # the measurement behind the rule
    tasks: tuple[str, ...] | None = None
    strategies: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None  # encoder, decoder
    max_examples: int | None = None  # applies to training sets of at most this many examples
    lr: float | None = None
    batch_size: int | None = None
    budget: EpochBudget | None = None

    def matches(self, task: str, strategy: str, kind: str, examples: int) -> bool:
        return ((self.tasks is None or task in self.tasks) and (self.strategies is None or strategy in self.strategies)
                and (self.kinds is None or kind in self.kinds)
                and (self.max_examples is None or examples <= self.max_examples))


DEFAULT_BATCH = 32  # train.batch_size: auto, unless a rule sets it (BERT's fine-tuning batch)
FEW_EXAMPLES = 256  # a training set this small gets a few dozen optimizer steps: a higher rate makes up for it
# Batch 8 helped on SQuAD's first 3 articles: 1,169 questions, 2,477 windows of 128 tokens, 930 steps in 3 epochs
# against 312 at batch 32 (4 epochs); and on articles 10-14 (1,027 questions). From about this many questions on,
# 3 epochs at batch 32 already take as many steps, and the default batch stays (measured at 1,027 and 1,169
# questions only). The same small sets train 5 epochs instead of 3 (1,550 and 1,460 steps at batch 8).
SMALL_QA = 5_000

RULES: tuple[Rule, ...] = (
    Rule("bench/README.md (auto): CoNLL-2003, 1,000 sentences, test F1 at 1.8e-4 (the 20-trial tune's best rate) "
         "against 1e-4: 77.07 against 76.76 (mean of seeds 42, 1 and 2); on a second 1,000 sentences 78.59 against "
         "77.30 (seeds 42 and 1)", tasks=("ner",), strategies=FULL_WEIGHTS, kinds=("encoder",), lr=1.8e-4),
    Rule("bench/README.md (auto): AG News, 8 per class: test accuracy 80.50 at 1e-4 against 73.75 at 5e-5 (the "
         "tunes' best by validation: 80.25 after 12 trials, 75.75 after 20)", tasks=("classification",),
         strategies=FULL_WEIGHTS, kinds=("encoder",), max_examples=FEW_EXAMPLES, lr=1e-4),
    Rule("bench/README.md (auto): SQuAD v1.1 at lr 1e-4, test F1 at batch 8 against batch 32: 50.22 against 47.38 "
         "on the first 3 articles (every complete trial of its 14-trial tune used batch 8), 57.30 against 56.07 on "
         "articles 10-14", tasks=("qa",), strategies=FULL_WEIGHTS, kinds=("encoder",), max_examples=SMALL_QA,
         batch_size=8),
    Rule("bench/README.md (auto): SQuAD v1.1 at lr 1e-4 and batch 8, test F1 after 5 epochs against 3: 52.68 "
         "against 50.22 on the first 3 articles; 56.18 against 55.91 on articles 10-14 (mean of seeds 42 and 1), "
         "validation higher in all three pairs", tasks=("qa",), strategies=FULL_WEIGHTS, kinds=("encoder",),
         max_examples=SMALL_QA, budget=EpochBudget(epochs=5)),
    Rule("bench/README.md (squad): SQuAD v1.1, lr 1e-4", tasks=("qa",), strategies=FULL_WEIGHTS, kinds=("encoder",),
         lr=1e-4),
)


@dataclass(frozen=True)
class Recipe:
    lr: float
    batch_size: int
    budget: EpochBudget
    why: dict[str, str]  # per setting (lr, batch_size, epochs): the rule's evidence, or which default, for the log


def auto_recipe(task: str, strategy, kind: str, examples: int, rules: tuple[Rule, ...] = RULES) -> Recipe:
    """The learning rate, batch size and epoch budget for ``strategy`` (a Strategy) training ``task`` on a ``kind``
    model with ``examples`` training examples."""
    matching = [r for r in rules if r.matches(task, strategy.name, kind, examples)]
    lr_rule = next((r for r in matching if r.lr is not None), None)
    batch_rule = next((r for r in matching if r.batch_size is not None), None)
    budget_rule = next((r for r in matching if r.budget is not None), None)
    why = {"lr": f"from {lr_rule.evidence}" if lr_rule else f"strategy {strategy.name}'s default",
           "batch_size": f"from {batch_rule.evidence}" if batch_rule else f"the default, {DEFAULT_BATCH}",
           "epochs": f"from {budget_rule.evidence}" if budget_rule else "the default budget"}
    return Recipe(lr_rule.lr if lr_rule else strategy.default_lr,
                  batch_rule.batch_size if batch_rule else DEFAULT_BATCH,
                  budget_rule.budget if budget_rule else DEFAULT_BUDGET, why)
