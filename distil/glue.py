"""GLUE as a table of data, and fine-tuning + evaluation of one model on one task.

Each `GlueTask` row says where its text is, how many labels it has (1 = regression, stsb), which
metrics score it and which validation splits it has (mnli: matched `m` and mismatched `mm`).
Data comes from the hub (`nyu-mll/glue`) or a local dir of `<task>/<split>.parquet` in the HF
schema, where a `<split>_subset.parquet` stands in for a split that is only available in part.
Fine-tuning is transformers' `Trainer` with dynamic padding, as in `run_glue.py`.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset, load_dataset

from distil import metrics


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task as data: input text columns, num_labels (1 = regression), metric names for
    distil.metrics.compute, validation splits by leaderboard column suffix, and `small`."""

    name: str
    text_fields: tuple[str, ...]
    num_labels: int
    metrics: tuple[str, ...]
    eval_splits: dict[str, str] = field(default_factory=lambda: {"": "validation"})  # column suffix -> split
    small: bool = False  # few examples: scores swing between seeds


TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in [
        GlueTask("cola", ("sentence",), 2, ("mcc",), small=True),
        GlueTask("sst2", ("sentence",), 2, ("accuracy",)),
        GlueTask("mrpc", ("sentence1", "sentence2"), 2, ("f1", "accuracy"), small=True),
        GlueTask("stsb", ("sentence1", "sentence2"), 1, ("pearson", "spearmanr"), small=True),
        GlueTask("qqp", ("question1", "question2"), 2, ("accuracy", "f1")),
        GlueTask("mnli", ("premise", "hypothesis"), 3, ("accuracy",),
                 {"_m": "validation_matched", "_mm": "validation_mismatched"}),
        GlueTask("qnli", ("question", "sentence"), 2, ("accuracy",)),
        GlueTask("rte", ("sentence1", "sentence2"), 2, ("accuracy",), small=True),
        GlueTask("wnli", ("sentence1", "sentence2"), 2, ("accuracy",), small=True),
    ]
}


def score_columns() -> list[str]:
    """Leaderboard score columns in GLUE order: cola, sst2, ..., mnli_m, mnli_mm, ..."""
    return [t.name + suffix for t in TASKS.values() for suffix in t.eval_splits]


def find_split(data: str, task: str, split: str) -> tuple[str, bool] | None:
    """Where a split lives: (parquet path or hub id, is_subset), or None if a local dir lacks it."""
    if not os.path.isdir(data):
        return data, False
    for name, subset in ((f"{split}.parquet", False), (f"{split}_subset.parquet", True)):
        path = Path(data) / task / name
        if path.is_file():
            return str(path), subset
    return None


def available_tasks(data: str, wanted: list[str]) -> list[str]:
    """The wanted tasks that have a train split and at least one validation split in `data`."""
    return [
        t for t in wanted
        if find_split(data, t, "train") and any(find_split(data, t, s) for s in TASKS[t].eval_splits.values())
    ]


def load_split(data: str, task: str, split: str, limit: int | None) -> tuple[Dataset, bool] | None:
    """(Dataset, is_subset) of up to `limit` rows (a fixed seeded sample), or None if absent."""
    found = find_split(data, task, split)
    if found is None:
        return None
    source, subset = found
    if source.endswith(".parquet"):
        ds = load_dataset("parquet", data_files={split: source}, split=split)
    else:
        ds = load_dataset(source, task, split=split)
    if limit is not None and limit < len(ds):
        ds = ds.shuffle(seed=0).select(range(limit))  # the same sample for every model and seed
    return ds, subset


def finetune_and_evaluate(model_dir: str, task_name: str, settings: dict, seed: int, data: str, pred_dir: str | None,
                          save_dir: str | None = None, trainer_cls=None, train_transform=None) -> dict:
    """Fine-tune `model_dir` on one GLUE task and score every validation split present.

    settings: lr, epochs, batch_size, max_seq_len, max_train_examples, max_eval_examples, use_gpu.
    Writes `<pred_dir>/<task><suffix>-seed<seed>.parquet` (idx, label, prediction) per split, and
    the fine-tuned model to `save_dir` if given. `trainer_cls` replaces transformers' `Trainer`
    (task-specific distillation passes a Trainer with a distillation loss) and `train_transform`
    maps the tokenised training set before training (it adds the teacher's logits).
    Returns {'task', 'seed', 'scores': {suffix: {metric: value ×100} | None}, 'subset_splits',
    'n_train', 'n_eval', 'seconds'}.
    """
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, TrainingArguments, set_seed)

    t0 = time.time()
    task = TASKS[task_name]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def encode(ds: Dataset) -> Dataset:
        enc = lambda b: tokenizer(*[b[f] for f in task.text_fields], truncation=True, max_length=settings["max_seq_len"])
        return ds.map(enc, batched=True, remove_columns=[c for c in ds.column_names if c not in ("label", "idx")])

    train, train_subset = load_split(data, task_name, "train", settings["max_train_examples"])
    set_seed(seed)  # the new classifier head is initialised here, before Trainer seeds anything
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=task.num_labels)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, learning_rate=settings["lr"], num_train_epochs=settings["epochs"],
            per_device_train_batch_size=settings["batch_size"], per_device_eval_batch_size=64,
            warmup_steps=0.1, seed=seed, save_strategy="no", logging_strategy="no", report_to="none",
            use_cpu=not settings.get("use_gpu", False), disable_tqdm=True,
        )
        train_set = train_transform(encode(train)) if train_transform else encode(train)
        trainer = (trainer_cls or Trainer)(model=model, args=args, train_dataset=train_set, processing_class=tokenizer,
                                           data_collator=DataCollatorWithPadding(tokenizer))
        trainer.train()
        if save_dir:
            trainer.save_model(save_dir)
        scores, subsets, n_eval = {}, ["train"] if train_subset else [], 0
        for suffix, split in task.eval_splits.items():
            found = load_split(data, task_name, split, settings["max_eval_examples"])
            if found is None:
                scores[suffix] = None  # e.g. mnli mismatched offline: left empty, never invented
                continue
            ds, subset = found
            subsets += [split] if subset else []
            out = trainer.predict(encode(ds))
            preds = out.predictions.squeeze(-1) if task.num_labels == 1 else out.predictions.argmax(-1)
            labels = np.asarray(ds["label"])
            scores[suffix] = {m: metrics.compute(m, labels, preds) for m in task.metrics}
            n_eval += len(ds)
            if pred_dir:
                Path(pred_dir).mkdir(parents=True, exist_ok=True)
                pd.DataFrame({"idx": ds["idx"], "label": labels, "prediction": preds}).to_parquet(
                    Path(pred_dir) / f"{task_name}{suffix}-seed{seed}.parquet", index=False)
    return {"task": task_name, "seed": seed, "scores": scores, "subset_splits": subsets,
            "n_train": len(train), "n_eval": n_eval, "seconds": round(time.time() - t0, 1)}
