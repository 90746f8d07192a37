"""Task-specific distillation: a student learns one task from the teacher fine-tuned on it.

The light alternative to general (pre-training) distillation: Sanh et al. 2019 §4.2 and Tang et
al. 2019 ("Distilling task-specific knowledge from BERT"). The student is initialised from the
teacher's layers (no general distillation) and trained on the task's training data with Hinton
et al. 2015's objective
    L = alpha_ce · KL(softmax(z_t/T) ‖ softmax(z_s/T)) · T² + (1 − alpha_ce) · CE(z_s, y)
for single-label tasks; for regression (stsb), alpha_ce · MSE(z_s, z_t) + (1 − alpha_ce) · MSE(z_s, y);
for multi-label tasks each label is its own yes/no softmax over (z, 0), so the same soft-target
cross-entropy becomes the mean over labels of
    alpha_ce · BCE(σ(z_s/T), σ(z_t/T)) · T² + (1 − alpha_ce) · BCE(σ(z_s), y)
(BCE against σ(z_t/T) is the Bernoulli KL plus the teacher's entropy, a constant: same gradient).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from distil.config.settings import FinetuneSettings, StudentShape
from distil.config.tasks import Task
from distil.evaluation.finetune import finetune_and_evaluate
from distil.science.losses import ce_loss
from distil.science.student import save_student

TEACHER_LOGITS = "teacher_logits"


def task_kd_loss(student_logits, teacher_logits, labels, alpha_ce: float, temperature: float) -> torch.Tensor:
    """Scalar loss. logits (B, C); labels (B,) class ids (single-label), (B,) floats with C = 1
    (regression) or (B, C) multi-hot floats (multi-label)."""
    if labels.dim() == 2:
        s, t = student_logits / temperature, teacher_logits / temperature
        soft = F.binary_cross_entropy_with_logits(s, torch.sigmoid(t)) * temperature**2
        hard = F.binary_cross_entropy_with_logits(student_logits, labels.to(student_logits.dtype))
        return alpha_ce * soft + (1 - alpha_ce) * hard
    if student_logits.shape[-1] == 1:
        s = student_logits.squeeze(-1)
        return alpha_ce * F.mse_loss(s, teacher_logits.squeeze(-1)) + (1 - alpha_ce) * F.mse_loss(s, labels.float())
    hard = F.cross_entropy(student_logits, labels)
    return alpha_ce * ce_loss(student_logits, teacher_logits, temperature) + (1 - alpha_ce) * hard


def _teacher_logits_adder(teacher_dir: str, batch_size: int = 64, device: str = "cpu"):
    """Dataset -> Dataset with the fine-tuned teacher's logits per example (the teacher sees its
    own inputs, token types included, which the DistilBERT student does not take), computed on
    `device` (the GPU of a `glue.use_gpu` task) in fp32 and stored as float lists."""
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, AutoTokenizer

    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir).to(device).eval()
    collate = DataCollatorWithPadding(AutoTokenizer.from_pretrained(teacher_dir))
    inputs = [c for c in ("input_ids", "attention_mask", "token_type_ids")]

    def add(ds):
        cols = [c for c in inputs if c in ds.column_names]
        logits = []
        with torch.inference_mode():
            for start in range(0, len(ds), batch_size):
                rows = ds.select(range(start, min(start + batch_size, len(ds))))
                batch = collate([{c: r[c] for c in cols} for r in rows])
                logits += teacher(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu().tolist()
        return ds.add_column(TEACHER_LOGITS, logits)

    return add


def _trainer_cls(alpha_ce: float, temperature: float):
    from transformers import Trainer

    class DistillationTrainer(Trainer):
        """Trainer whose loss distils the precomputed teacher logits of each batch."""

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            self._signature_columns = [*self._signature_columns, TEACHER_LOGITS]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if TEACHER_LOGITS not in inputs:  # evaluation batches: the task loss alone
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            teacher_logits = inputs.pop(TEACHER_LOGITS)
            labels = inputs.pop("labels")
            out = model(**inputs)
            # In fp32 even under bf16 autocast (out.logits is then bf16): the soft targets keep their
            # precision, and T² times a bf16 KL would carry its 3-digit rounding into the gradient.
            logits = out.logits.float()
            loss = task_kd_loss(logits, teacher_logits.float(), labels, alpha_ce, temperature)
            return (loss, out) if return_outputs else loss

    return DistillationTrainer


@dataclass(frozen=True)
class TaskDistillRun:
    """One task-specific distillation row's runs (one per seed), typed across the Ray boundary."""

    teacher_mlm_dir: str  # the (head-fitted) teacher whose layers initialise the student
    teacher_task_dir: str  # the teacher fine-tuned on `task` (its logits are the soft targets)
    task: Task
    n_layers: int
    layer_selection: str | list[int]  # a rule or layer indices (distil.config.layers)
    alpha_ce: float  # weight of the soft-target term; 1 - alpha_ce weighs the task loss
    temperature: float
    settings: FinetuneSettings
    pred_dir: str  # where the predictions go (finetune_and_evaluate)
    data_cache: str | None = None  # the task's prepare_task_data dir
    shape: StudentShape = StudentShape()  # the student's width (default the teacher's: weight selection if narrower)


def distill_on_task(run: TaskDistillRun, seed: int) -> dict:
    """Build a student from `run.teacher_mlm_dir`'s layers (seeded by `seed`), distil it on
    `run.task` from `run.teacher_task_dir`, evaluate it. Returns finetune_and_evaluate's dict."""
    with tempfile.TemporaryDirectory() as student_dir:
        save_student(run.teacher_mlm_dir, run.n_layers, run.layer_selection, seed, student_dir, run.shape)
        return finetune_and_evaluate(student_dir, run.task, run.settings, seed, run.pred_dir,
                                     trainer_cls=_trainer_cls(run.alpha_ce, run.temperature),
                                     train_transform=_teacher_logits_adder(
                                         run.teacher_task_dir, device="cuda" if run.settings.use_gpu else "cpu"),
                                     data_cache=run.data_cache)
