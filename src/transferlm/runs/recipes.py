"""What ``train.lr: auto`` and ``train.epochs: auto`` resolve to: the strategy's defaults, refined per task, model
kind and data size by rules measured in ``bench/auto.py`` (bench/README.md, "auto").

A rule names what it applies to (None: anything) and what it changes; the first rule that matches a run sets the
learning rate, and the first that matches and sets a budget sets the epoch budget. Each rule says the measurement
it comes from, and the run's log and saved config say which rule chose.
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
    budget: EpochBudget | None = None

    def matches(self, task: str, strategy: str, kind: str, examples: int) -> bool:
        return ((self.tasks is None or task in self.tasks) and (self.strategies is None or strategy in self.strategies)
                and (self.kinds is None or kind in self.kinds)
                and (self.max_examples is None or examples <= self.max_examples))


FEW_EXAMPLES = 256  # a training set this small gets a few dozen optimizer steps: a higher rate makes up for it

RULES: tuple[Rule, ...] = (
    Rule("bench/README.md (auto): CoNLL-2003, 1,000 sentences: test F1 76.58 at 1e-4, the 12-trial tune's best "
         "76.95", tasks=("ner",), strategies=FULL_WEIGHTS, kinds=("encoder",), lr=1e-4),
    Rule("bench/README.md (auto): AG News, 8 per class: test accuracy 80.50 at 1e-4 against 73.75 at 5e-5 (the "
         "12-trial tune's best 80.25)", tasks=("classification",), strategies=FULL_WEIGHTS, kinds=("encoder",),
         max_examples=FEW_EXAMPLES, lr=1e-4),
    Rule("bench/README.md (squad): SQuAD v1.1, lr 1e-4", tasks=("qa",), strategies=FULL_WEIGHTS, kinds=("encoder",),
         lr=1e-4),
)


@dataclass(frozen=True)
class Recipe:
    lr: float
    budget: EpochBudget
    because: str  # which rule (or the strategy's default) chose, for the log


def auto_recipe(task: str, strategy, kind: str, examples: int, rules: tuple[Rule, ...] = RULES) -> Recipe:
    """The learning rate and epoch budget for ``strategy`` (a Strategy) training ``task`` on a ``kind`` model with
    ``examples`` training examples."""
    matching = [r for r in rules if r.matches(task, strategy.name, kind, examples)]
    lr_rule = next((r for r in matching if r.lr is not None), None)
    budget_rule = next((r for r in matching if r.budget is not None), None)
    lr = lr_rule.lr if lr_rule else strategy.default_lr
    budget = budget_rule.budget if budget_rule else DEFAULT_BUDGET
    reasons = [f"lr from {lr_rule.evidence}" if lr_rule else f"lr: strategy {strategy.name}'s default"]
    if budget_rule:
        reasons.append(f"epochs from {budget_rule.evidence}")
    return Recipe(lr, budget, "; ".join(reasons))
