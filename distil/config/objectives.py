"""Which way each objective is better: one table, read by the search (Tune's and Optuna's `mode`), the
janitor and the confirmation (best finished candidates), the leaderboard's ranking and best student, the
headline and the plots. No other module decides "higher is better".

* Quality scores are maximised: the GLUE macro (`macro_score`), the macro over the spec's own tasks
  (`tasks_macro`) and any task score column (×100 on a split: `sst2`, `mnli_m`, `uci_news`, ...).
* `perplexity` is minimised: a causal LM's WikiText perplexity (distil.evaluation.perplexity; exp of the
  mean NLL per token, so lower is better; Radford et al. 2019, Sanh et al. 2019's DistilGPT2 row).
* Costs are minimised: latency (ms per example), parameters, size on disk (MB).
"""

from __future__ import annotations

import math
from typing import Literal

Direction = Literal["max", "min"]

PERPLEXITY = "perplexity"
QUALITY_OBJECTIVES = ("macro_score", "tasks_macro", PERPLEXITY)  # and every task score column (max)
COST_OBJECTIVES = ("latency_ms_b1", "latency_ms_b32", "n_params", "size_mb")
DIRECTIONS: dict[str, Direction] = {
    "macro_score": "max", "tasks_macro": "max", PERPLEXITY: "min", **{c: "min" for c in COST_OBJECTIVES},
}


def direction(objective: str) -> Direction:
    """"max" or "min" for `objective` (a leaderboard column); a column outside DIRECTIONS is a task score
    (max)."""
    return DIRECTIONS.get(objective, "max")


def lower_is_better(objective: str) -> bool:
    """Whether smaller values of `objective` are better (pandas' `ascending` when ranking best first)."""
    return direction(objective) == "min"


def sort_key(objective: str, value) -> float:
    """A key that sorts values of `objective` best first in ascending order; a missing or non-finite value
    (None, NaN) sorts last."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return math.inf
    return value if lower_is_better(objective) else -value
