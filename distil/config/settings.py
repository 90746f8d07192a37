"""Typed settings that travel from the spec to the code that runs them, across Ray's process
boundary as they are (frozen, picklable, torch-free): the weights of the distillation objective
and the settings of one fine-tuning run."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class LossWeights:
    """The DistilBERT objective's weights (Sanh et al. 2019 §2-3; see distil.science.losses):

        L = alpha_ce · L_ce(T) + alpha_mlm · L_mlm + alpha_cos · L_cos + alpha_mse · L_mse

    `temperature` T softens the soft-target term L_ce. The spec's `search` section searches or
    fixes each of them; a candidate (distil.search.train.CandidateParams) carries one, the
    distillation step and `distillation_loss` take it.

    Raises:
        ValueError: every alpha is 0 (nothing to learn).
    """

    alpha_ce: float
    alpha_mlm: float
    alpha_cos: float
    temperature: float
    alpha_mse: float = 0.0

    def __post_init__(self):
        if max(self.alpha_ce, self.alpha_mlm, self.alpha_cos, self.alpha_mse) <= 0:
            raise ValueError("every alpha is 0: nothing to learn; give at least one loss term a positive weight")

    @property
    def needs_teacher(self) -> bool:
        """Whether a term that reads the teacher (ce, cos, mse) has a positive weight: MLM alone (the
        mlm_only reference row) needs no teacher forward."""
        return max(self.alpha_ce, self.alpha_cos, self.alpha_mse) > 0


LOSS_WEIGHT_NAMES = tuple(f.name for f in fields(LossWeights))  # alpha_ce, alpha_mlm, alpha_cos, temperature, alpha_mse


@dataclass(frozen=True)
class FinetuneSettings:
    """One task's fine-tuning run (distil.evaluation.finetune.finetune_and_evaluate): learning rate,
    epochs, batch size, tokens per example, the budgets of examples (None: the whole split), and
    whether it takes a GPU. `GlueSpec.settings(task)` makes it, overrides applied."""

    lr: float
    epochs: float
    batch_size: int
    max_seq_len: int
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    use_gpu: bool = False

    def limit(self, budget: str) -> int | None:
        """`max_train_examples` or `max_eval_examples`, by name (a split's budget)."""
        if budget not in ("max_train_examples", "max_eval_examples"):
            raise ValueError(f"unknown budget {budget!r}")
        return getattr(self, budget)
