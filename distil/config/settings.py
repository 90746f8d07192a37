"""Typed settings that travel from the spec to the code that runs them, across Ray's process
boundary as they are (frozen, picklable, torch-free): the distillation objective, the student's
shape and the settings of one fine-tuning run."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, Union

# A run's precision as the spec gives it: bf16 autocast (true), fp32 (false), or bf16 where the
# device has native bf16 and fp32 elsewhere (auto; the rule: distil.science.precision).
Bf16 = Union[bool, Literal["auto"]]


@dataclass(frozen=True)
class LossWeights:
    """The distillation objective: its terms' weights and the settings of those terms
    (see distil.science.losses):

        L = alpha_ce · L_ce(T) + alpha_mlm · L_mlm + alpha_cos · L_cos + alpha_mse · L_mse
            + alpha_clm · L_clm + alpha_hidden · L_hidden + alpha_attn · L_attn + alpha_relation · L_relation

    The first four are DistilBERT's (Sanh et al. 2019 §2-3); `temperature` T softens L_ce. L_clm is the
    causal LM's next-token cross-entropy (the original distiller's `alpha_clm`, DistilGPT2): it takes
    alpha_mlm's place for a causal teacher (distil.config.families: objective `clm`; the terms are then
    losses.causal_distillation_loss's, no masking), and is 0 for a masked one. The
    layer-wise terms: L_hidden, TinyBERT's hidden-state and embedding MSE through learned projections
    (Jiao et al. 2020, eq. 8-9); L_attn, TinyBERT's MSE of attention scores (eq. 7); L_relation,
    MiniLMv2's Q-Q/K-K/V-V self-attention relation KL over `relation_heads` relation heads from
    teacher layer `relation_layer` (Python index: -1 is the last) to the student's last layer
    (Wang et al. 2021, §3). `layer_map` says which teacher layer each student layer learns from in
    L_hidden and L_attn: a rule of distil.config.layers (`uniform`, TinyBERT's g(m) = m·L_t/L_s) or
    an explicit `1,3,5` (canonical key). New terms default to 0, which is the objective of every run
    before they existed.

    The spec's `search` section searches or fixes each of them; a candidate
    (distil.search.train.CandidateParams) carries one, the distillation step and `distillation_loss`
    take it.

    Raises:
        ValueError: every alpha is 0 (nothing to learn).
    """

    alpha_ce: float
    alpha_mlm: float
    alpha_cos: float
    temperature: float
    alpha_mse: float = 0.0
    alpha_clm: float = 0.0
    alpha_hidden: float = 0.0
    alpha_attn: float = 0.0
    alpha_relation: float = 0.0
    layer_map: str = "uniform"
    relation_heads: int = 48  # MiniLMv2's for base-size teachers
    relation_layer: int = -1

    def __post_init__(self):
        if max(self.alpha_ce, self.alpha_mlm, self.alpha_cos, self.alpha_mse, self.alpha_clm, *self.layer_alphas) <= 0:
            raise ValueError("every alpha is 0: nothing to learn; give at least one loss term a positive weight")

    @property
    def layer_alphas(self) -> tuple[float, float, float]:
        """(alpha_hidden, alpha_attn, alpha_relation): the terms that read the models' inner layers."""
        return self.alpha_hidden, self.alpha_attn, self.alpha_relation

    @property
    def reads_logits(self) -> bool:
        """Whether a term on the output logits (ce, mlm, mse, clm) has a positive weight. The logits
        depend on every parameter of the student; without them a term reads only some layers (hidden
        states, attention scores, the relations of one layer, the last hidden state), and the others
        (the MLM head, the last layer's FFN, ...) get no gradient, which DDP must be told of
        (`find_unused_parameters`, distil.search.train)."""
        return max(self.alpha_ce, self.alpha_mlm, self.alpha_mse, self.alpha_clm) > 0

    @property
    def needs_teacher(self) -> bool:
        """Whether a term that reads the teacher (every one but mlm and clm) has a positive weight: MLM
        alone (the mlm_only reference row), or CLM alone, needs no teacher forward."""
        return max(self.alpha_ce, self.alpha_cos, self.alpha_mse, *self.layer_alphas) > 0


@dataclass(frozen=True)
class StudentShape:
    """The student's width: hidden size, attention heads, FFN size; None takes the teacher's. A
    student narrower than its teacher is initialised by weight selection (distil.science.student).
    The spec's `student` section fixes it (`StudentSpec.shape()`)."""

    hidden_size: int | None = None
    num_attention_heads: int | None = None
    intermediate_size: int | None = None

    def given(self) -> dict[str, int]:
        """The fields that are set (not the teacher's by default), by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


# alpha_ce, alpha_mlm, alpha_cos, temperature, alpha_mse, alpha_clm, then the layer-wise terms and their settings
LOSS_WEIGHT_NAMES = tuple(f.name for f in fields(LossWeights))


@dataclass(frozen=True)
class FinetuneSettings:
    """One task's fine-tuning run (distil.evaluation.finetune.finetune_and_evaluate): learning rate,
    epochs, batch size, tokens per example, the budgets of examples (None: the whole split),
    whether it takes a GPU, and its precision (`bf16`). `GlueSpec.settings(task)` makes it, overrides applied."""

    lr: float
    epochs: float
    batch_size: int
    max_seq_len: int
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    use_gpu: bool = False
    selection_examples: int = 0  # the held-out slice of the train split (see train_and_selection)
    bf16: Bf16 = "auto"  # distil.science.precision.resolve_bf16 decides for the run's device

    def limit(self, budget: str) -> int | None:
        """Rows of a split to load, by its budget's name: `max_eval_examples`, or for the train split
        (`max_train_examples`) the training rows plus the selection slice after them (None: all)."""
        if budget == "max_train_examples":
            t = self.max_train_examples
            return None if t is None else t + self.selection_examples
        if budget == "max_eval_examples":
            return self.max_eval_examples
        raise ValueError(f"unknown budget {budget!r}")

    def train_and_selection(self, n: int) -> tuple[range, range]:
        """(training rows, selection rows): positions in the seeded order of a train split of which
        `n` rows were loaded (`limit('max_train_examples')` of them, or all).

        The selection slice is held out: never trained on, scored after fine-tuning, and what the
        search ranks candidates by (the early-stopping proxy and the trials' objectives), while the
        reported numbers come from the validation splits (issue 21: the proxy never sees the rows
        that rank). It is the `selection_examples` rows right after the first `max_train_examples`,
        so training is unchanged. When the split is too short for both (or `max_train_examples` is
        unset: the whole split), the slice is its last min(selection_examples, n // 10) rows and
        comes out of training."""
        t, s = self.max_train_examples, self.selection_examples
        if t is not None and t + s <= n:
            return range(t), range(t, t + s)
        s = min(s, n // 10)
        train = n - s if t is None else min(t, n - s)
        return range(train), range(train, train + s)
