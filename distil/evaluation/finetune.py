"""Fine-tuning one model on one task (distil.config.tasks.Task) and scoring it from its predictions.

Data path of one run, as in transformers' `run_glue.py`:
  load split -> one seeded order (shuffle seed 0) -> first `max_*_examples` rows -> tokenise
  -> `Trainer` (dynamic padding) -> logits -> predictions DataFrame -> `score_predictions`.
Every split is put in the same seeded order for every model and seed, so a budget of k examples
is always the same k rows and a smaller budget is a prefix of a larger one. The train split also
yields the held-out selection slice (FinetuneSettings.train_and_selection): scored like an eval
split after training, it is what the search ranks by; the eval splits are what is reported. `prepare_task_data`
writes the tokenised splits once per sweep (memory-mapped Arrow, `datasets.save_to_disk`) for
every fine-tuning run to reuse: every student shares the teacher's tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from distil.config.settings import FinetuneSettings
from distil.config.tasks import MULTI, REGRESSION, SINGLE, Task, check_split, find_split, load_split


# ---------------------------------------------------------------- tokenised data, cached
def _multi_hot(label_ids, num_labels: int) -> np.ndarray:
    """(N, num_labels) float32 0/1 matrix from N lists of class ids."""
    out = np.zeros((len(label_ids), num_labels), dtype=np.float32)
    for row, ids in enumerate(label_ids):
        out[row, np.asarray(ids, dtype=np.int64)] = 1.0
    return out


def _encode(task: Task, ds, tokenizer, max_seq_len: int):
    """Tokenised split: input_ids, attention_mask (token_type_ids), `labels` in the model's form
    (int64 class id; float32 multi-hot (num_labels,) vector; float32 value) and `idx`."""
    from datasets import Features, List, Value

    label_types = {SINGLE: Value("int64"), MULTI: List(Value("float32")), REGRESSION: Value("float32")}
    label_type = label_types[task.problem_type]

    def encode(batch):
        out = dict(tokenizer(*[batch[f] for f in task.text_fields], truncation=True, max_length=max_seq_len))
        labels = batch[task.label_field]
        out["labels"] = _multi_hot(labels, task.num_labels).tolist() if task.problem_type == MULTI else labels
        out["idx"] = batch["idx"]
        return out

    sample = encode(ds[:1])
    features = Features({k: (label_type if k == "labels" else Value("int64") if k == "idx" else List(Value("int32")))
                         for k in sample})
    return ds.map(encode, batched=True, remove_columns=ds.column_names, features=features)


def _splits(task: Task) -> dict[str, str]:
    """split -> which budget limits it: the train split and each eval split."""
    return {task.train_split: "max_train_examples", **{s: "max_eval_examples" for s in task.eval_splits.values()}}


def _load_all(task: Task, settings: FinetuneSettings, tokenizer) -> dict:
    """{split: tokenised Dataset | None (absent)} of every split, each cut to settings.limit, and
    the splits that are subsets."""
    splits, subsets = {}, []
    for split, limit_key in _splits(task).items():
        found = load_split(task, split, settings.limit(limit_key))
        if found is None:
            splits[split] = None  # e.g. mnli mismatched offline: left empty, never invented
            continue
        ds, subset = found
        check_split(task, split, ds)
        splits[split] = _encode(task, ds, tokenizer, settings.max_seq_len)
        subsets += [split] if subset else []
    return {"splits": splits, "subset_splits": subsets}


def _hold_out(task: Task, settings: FinetuneSettings, data: dict) -> dict:
    """Cut the loaded train split into the training rows and the held-out `selection` slice."""
    loaded = data["splits"][task.train_split]
    train, selection = settings.train_and_selection(len(loaded))
    data["splits"][task.train_split] = loaded.select(train)
    data["selection"] = loaded.select(selection) if len(selection) else None
    return data


def build_task_data(task: Task, settings: FinetuneSettings, tokenizer) -> dict:
    """In memory: {'splits': {split: tokenised Dataset | None (absent)}, 'selection': the held-out
    slice of the train split (a Dataset, or None when empty), 'subset_splits': [...]}.
    Reads settings.max_seq_len, max_train_examples, max_eval_examples, selection_examples (None = the
    whole split)."""
    return _hold_out(task, settings, _load_all(task, settings, tokenizer))


def _fingerprint(task: Task, settings: FinetuneSettings, tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # the whole tokenizer (normaliser, vocab, ...) less the state each call sets
        state = json.loads(backend.to_str())
        vocab = json.dumps({k: v for k, v in state.items() if k not in ("truncation", "padding")},
                           sort_keys=True)
    else:
        vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
    files = []
    for split in _splits(task):
        found = find_split(task, split)
        if found and os.path.isfile(found[0]):
            st = os.stat(found[0])
            files.append((found[0], st.st_size, st.st_mtime_ns))
    key = {"task": asdict(task), "max_seq_len": settings.max_seq_len, "files": files, "v": 1,
           "limits": [settings.limit("max_train_examples"), settings.limit("max_eval_examples")],
           "tokenizer": hashlib.sha256(vocab.encode()).hexdigest()}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_task_data(task: Task, settings: FinetuneSettings, tokenizer, cache_dir: str | os.PathLike) -> str:
    """Tokenise the task's splits once and save them (`datasets.save_to_disk`, memory-mapped when
    loaded) under `cache_dir/task-<name>-<key>`; returns that dir, reused if it exists. The key
    hashes the task, the tokenizer, max_seq_len, the budgets and the data files' size and mtime.
    Pass the dir as `finetune_and_evaluate(..., data_cache=dir)`: runs then only load it.

    Reads settings.max_seq_len and the rows settings.limit asks of each split (the train split's
    with its selection slice). A run may ask for fewer examples than were prepared (it takes the
    prefix: the same rows a smaller preparation gives).
    Safe when several processes prepare the same task: each writes a temporary dir, one rename wins.
    """
    out = Path(cache_dir) / f"task-{task.name}-{_fingerprint(task, settings, tokenizer)}"
    if (out / "meta.json").is_file():
        return str(out)
    data = _load_all(task, settings, tokenizer)  # the train split whole: runs cut their own slice
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    meta = {"task": task.name, "max_seq_len": settings.max_seq_len, "subset_splits": data["subset_splits"],
            "splits": {}}
    for split, limit_key in _splits(task).items():
        ds = data["splits"][split]
        if ds is not None:
            ds.save_to_disk(str(tmp / split))
            limit = settings.limit(limit_key)
            meta["splits"][split] = {"rows": len(ds), "complete": limit is None or len(ds) < limit}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    try:
        tmp.rename(out)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


def load_task_data(data_cache: str, task: Task, settings: FinetuneSettings) -> dict:
    """prepare_task_data's splits (memory-mapped), each cut to the run's budget (a prefix), the
    train split's selection slice held out: build_task_data's form.

    Raises:
        ValueError: the cache was prepared for another max_seq_len or with fewer rows than asked.
    """
    from datasets import load_from_disk

    meta = json.loads((Path(data_cache) / "meta.json").read_text())
    if meta["max_seq_len"] != settings.max_seq_len:
        raise ValueError(f"data_cache {data_cache}: tokenised at max_seq_len {meta['max_seq_len']}, "
                         f"asked {settings.max_seq_len}")
    splits = {}
    for split, limit_key in _splits(task).items():
        info = meta["splits"].get(split)
        if info is None:
            splits[split] = None
            continue
        limit = settings.limit(limit_key)
        if not info["complete"] and (limit is None or limit > info["rows"]):
            raise ValueError(f"data_cache {data_cache}: split {split!r} holds {info['rows']} rows, asked {limit}; "
                             "prepare more")
        ds = load_from_disk(str(Path(data_cache) / split))
        splits[split] = ds.select(range(limit)) if limit is not None and limit < len(ds) else ds
    return _hold_out(task, settings, {"splits": splits, "subset_splits": meta["subset_splits"]})


# ---------------------------------------------------------------- predictions and scores
def predictions_frame(task: Task, ds, logits: np.ndarray) -> pd.DataFrame:
    """The saved predictions of one eval split: what `score_predictions` needs to recompute every
    metric. ds: the tokenised split (`idx`, `labels`); logits: (N, num_labels) model outputs.

    Columns: single-label: idx, label (class id), prediction (argmax class id);
    regression: idx, label, prediction (float); multi-label: idx, label (list of true class ids),
    prediction (list of class ids with probability >= threshold), probability (list of
    num_labels floats: sigmoid of the logits)."""
    idx = np.asarray(ds["idx"])
    if task.problem_type == REGRESSION:
        return pd.DataFrame({"idx": idx, "label": np.asarray(ds["labels"]), "prediction": logits[:, 0]})
    if task.problem_type == SINGLE:
        return pd.DataFrame({"idx": idx, "label": np.asarray(ds["labels"]), "prediction": logits.argmax(-1)})
    probs = (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
    truth = np.asarray(ds["labels"], dtype=np.float32)
    return pd.DataFrame({"idx": idx, "label": [np.flatnonzero(r) for r in truth],
                         "prediction": [np.flatnonzero(p >= task.threshold) for p in probs],
                         "probability": list(probs)})


def score_predictions(task: Task, df: pd.DataFrame) -> dict[str, float]:
    """{metric: value ×100} of `task.metrics` on a predictions DataFrame (predictions_frame's
    columns), e.g. read back from `<task><suffix>-seed<s>.parquet`, or any subset of its rows
    (a bootstrap sample). Multi-label metrics are computed from `probability` (thresholded at
    task.threshold for the F1s; the `prediction` column is not read), so a saved run can be
    rescored at another threshold. See distil.evaluation.metrics for labels absent from the rows.
    """
    from distil.evaluation import metrics

    if task.problem_type == MULTI:
        truth = _multi_hot(df["label"].tolist(), task.num_labels)
        probs = np.stack(df["probability"].to_numpy()).astype(np.float64)
        preds = (probs >= task.threshold).astype(np.int64)
        return {m: metrics.compute(m, truth, probs if m == "roc_auc" else preds) for m in task.metrics}
    return {m: metrics.compute(m, df["label"].to_numpy(), df["prediction"].to_numpy()) for m in task.metrics}


# ---------------------------------------------------------------- fine-tuning
def _bias_to_prior(model, freq: np.ndarray) -> None:
    """Start a multi-label head at the labels' training frequencies: output bias
    log(p / (1 - p)) per label, so the first steps do not spend themselves pushing every
    probability from 0.5 down to the rare labels' few percent (Lin et al. 2017, Focal Loss, §3.3
    "prior initialization"). Without it Adam's second-moment estimate, inflated by those first
    large gradients, kept the MiniLM teacher at chance on goemotions (ROC AUC 54.7 after 750 steps).
    freq: (num_labels,) share of training rows with each label."""
    import torch

    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == len(freq)][-1]
    p = np.clip(freq, 1e-4, 1 - 1e-4)
    with torch.no_grad():
        head.bias.copy_(torch.from_numpy(np.log(p / (1 - p))).to(head.bias.dtype))


def finetune_and_evaluate(model_dir: str, task: Task, settings: FinetuneSettings, seed: int, pred_dir: str | None,
                          save_dir: str | None = None, trainer_cls=None, train_transform=None,
                          data_cache: str | None = None) -> dict:
    """Fine-tune `model_dir` on one task and score every eval split present.

    settings: lr, epochs, batch_size, max_seq_len, max_train_examples, max_eval_examples, use_gpu,
    bf16 (GlueSpec.settings(task)); bf16 is resolved for the run's device (distil.science.precision:
    auto = bf16 autocast where it computes bf16 natively) and given to the Trainer, TF32 on CUDA.
    The model gets a fresh head with `num_labels` outputs and transformers' `problem_type` (its
    loss: cross-entropy, BCE-with-logits over multi-hot labels, or MSE), initialised after
    `set_seed(seed)`. `data_cache`: a prepare_task_data dir (else the splits are tokenised here).
    Writes `<pred_dir>/<task><suffix>-seed<seed>.parquet` per split (predictions_frame's columns),
    `<pred_dir>/selection/<task>-seed<seed>.parquet` for the held-out selection slice of the train
    split, and the fine-tuned model to `save_dir` if given. `trainer_cls` replaces transformers' `Trainer`
    (task-specific distillation passes a Trainer with a distillation loss) and `train_transform`
    maps the tokenised training set before training (it adds the teacher's logits).
    Returns {'task', 'seed', 'scores': {suffix: {metric: value ×100} | None}, 'selection': {metric:
    value ×100} | None (the selection slice), 'subset_splits', 'n_train', 'n_eval', 'n_selection',
    'seconds', 'bf16'} (seconds: fine-tuning + evaluation, not tokenising a cache; bf16: whether it
    ran in bf16).
    """
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, TrainingArguments, set_seed)

    from distil.science.precision import enable_tf32, resolve_bf16

    t0 = time.time()
    device = "cuda" if settings.use_gpu else "cpu"
    bf16 = resolve_bf16(settings.bf16, device)
    enable_tf32(device)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = load_task_data(data_cache, task, settings) if data_cache else build_task_data(task, settings, tokenizer)
    set_seed(seed)  # the new classifier head is initialised here, before Trainer seeds anything
    names = {"id2label": dict(enumerate(task.label_names)),
             "label2id": {n: i for i, n in enumerate(task.label_names)}} if task.label_names else {}
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=task.num_labels,
                                                               problem_type=task.problem_type, **names)
    train = data["splits"][task.train_split]
    if task.problem_type == MULTI:
        _bias_to_prior(model, np.asarray(train["labels"]).mean(axis=0))
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, learning_rate=settings.lr, num_train_epochs=settings.epochs,
            per_device_train_batch_size=settings.batch_size, per_device_eval_batch_size=64,
            warmup_steps=0.1, seed=seed, save_strategy="no", logging_strategy="no", report_to="none",
            use_cpu=not settings.use_gpu, disable_tqdm=True, bf16=bf16,
            # Batches of similar lengths (less padding) on a GPU; on a CPU the random order the
            # recorded CPU results were measured with (grouping changes which examples meet in a batch).
            train_sampling_strategy="group_by_length" if settings.use_gpu else "random",
        )
        trainer = (trainer_cls or Trainer)(model=model, args=args, processing_class=tokenizer,
                                           train_dataset=train_transform(train) if train_transform else train,
                                           data_collator=DataCollatorWithPadding(tokenizer))
        trainer.train()
        if save_dir:
            trainer.save_model(save_dir)
        def score(ds, pred_file: Path | None) -> dict[str, float]:
            df = predictions_frame(task, ds, trainer.predict(ds).predictions)
            if pred_file:
                pred_file.parent.mkdir(parents=True, exist_ok=True)
                df.to_parquet(pred_file, index=False)
            return score_predictions(task, df)

        scores, n_eval = {}, 0
        for suffix, split in task.eval_splits.items():
            ds = data["splits"][split]
            scores[suffix] = None if ds is None else score(
                ds, pred_dir and Path(pred_dir) / f"{task.name}{suffix}-seed{seed}.parquet")
            n_eval += len(ds) if ds is not None else 0
        held_out = data["selection"]
        selection = None if held_out is None else score(
            held_out, pred_dir and Path(pred_dir) / "selection" / f"{task.name}-seed{seed}.parquet")
    return {"task": task.name, "seed": seed, "scores": scores, "selection": selection,
            "subset_splits": data["subset_splits"], "n_train": len(train), "n_eval": n_eval,
            "n_selection": 0 if held_out is None else len(held_out), "seconds": round(time.time() - t0, 1),
            "bf16": bf16}
