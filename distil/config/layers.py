"""Layer selection: which teacher layers initialise the student's layers. One registry of rules.

Pure Python (no torch), so the spec can check selections without loading a model.
"""

from __future__ import annotations

from typing import Callable, Union

LayerSelection = Union[str, list[int]]

# Rule name -> (teacher depth L, student depth n) -> teacher layer indices (0-based), or None for
# random_init (no teacher weights at all: the no-distillation-init baseline).
RULES: dict[str, Callable[[int, int], list[int] | None]] = {
    # Evenly spread with both ends kept, round(i·(L-1)/(n-1)): 12→6 gives [0, 2, 4, 7, 9, 11],
    # the choice of Sanh et al. 2019 (DistilBERT) for bert-base.
    "distilbert": lambda L, n: [round(i * (L - 1) / (n - 1)) for i in range(n)] if n > 1 else [0],
    # One in L/n from the bottom, round(i·L/n): 12→6 gives [0, 2, ..., 10].
    "every_other": lambda L, n: [round(i * L / n) for i in range(n)],
    # The top layer of each of n equal blocks, round((i+1)·L/n)-1 (TinyBERT's uniform mapping,
    # Jiao et al. 2020, §3.3): 12→6 gives [1, 3, ..., 11].
    "uniform": lambda L, n: [round((i + 1) * L / n) - 1 for i in range(n)],
    "first": lambda L, n: list(range(n)),
    "last": lambda L, n: list(range(L - n, L)),
    "random_init": lambda L, n: None,
}


def layer_key(selection: LayerSelection) -> str:
    """Canonical string of a layer selection: a rule name or `0,2,4` (Optuna takes only scalars)."""
    return selection if isinstance(selection, str) else ",".join(str(i) for i in selection)


def parse_layer_key(key: str) -> LayerSelection:
    """Inverse of layer_key: a rule name as is, `0,2,4` -> [0, 2, 4]. Raises ValueError on a bad int."""
    return key if key in RULES else [int(i) for i in key.split(",")]


def check_selection(selection) -> None:
    """Raise ValueError unless `selection` is a known rule name or a list of distinct non-negative ints."""
    if isinstance(selection, str):
        if selection not in RULES:
            raise ValueError(f"unknown layer selection {selection!r}; use one of {', '.join(RULES)} or a list of "
                             "layer indices")
    elif isinstance(selection, list) and all(isinstance(i, int) for i in selection):
        if any(i < 0 for i in selection) or len(set(selection)) != len(selection):
            raise ValueError(f"layer list {selection} must hold distinct non-negative teacher layer indices")
    else:
        raise ValueError(f"layer selection {selection!r} must be a rule name or a list of ints")


def select_layers(selection: LayerSelection, n_teacher: int, n_student: int) -> list[int] | None:
    """Teacher layer indices (0-based) that initialise student layers 0..n_student-1 (see RULES);
    an explicit list is used as is; `random_init` gives None.

    Raises:
        ValueError: n_student not in [1, n_teacher], an unknown rule, or an explicit list of the
            wrong length, with duplicates or out-of-range indices.
    """
    if not 1 <= n_student <= n_teacher:
        raise ValueError(f"student.n_layers={n_student} must be between 1 and the teacher's {n_teacher} layers")
    if isinstance(selection, list):
        fits = all(0 <= i < n_teacher for i in selection)
        if len(selection) != n_student or len(set(selection)) != n_student or not fits:
            raise ValueError(f"layer_selection {selection}: need {n_student} distinct teacher layer indices in "
                             f"[0, {n_teacher - 1}]")
        return list(selection)
    check_selection(selection)
    return RULES[selection](n_teacher, n_student)
