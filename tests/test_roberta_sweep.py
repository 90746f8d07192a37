"""A RoBERTa teacher runs a whole sweep (issue 26): a randomly initialised tiny RoBERTa (4 layers, hidden 64,
with its LM head) and GPT-2's real BPE in RoBERTa's layout (../shared/models/gpt2-bpe/roberta), run as a user
runs a sweep (`python run_sweep.py run SPEC --output DIR` on a local Ray), on real Wikipedia and GLUE parquet.
No RoBERTa weights exist offline; a hub id (roberta-base) takes the same path on a networked machine."""

import json

import pandas as pd
import pytest
import torch
import yaml

from distil.config.layers import select_layers
from tests.conftest import CORPUS, GLUE, SHARED, run_sweep_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray-sweeps")]

BPE = SHARED / "models" / "gpt2-bpe" / "roberta"
TASKS = ["stsb"]
LAYERS = 4


@pytest.fixture(scope="module")
def roberta_teacher_dir(tmp_path_factory):
    """The tiny teacher saved as a sweep finds it: config.json (model_type roberta), weights with the LM head,
    the tokenizer. 64 usable positions (max_position_embeddings 66, pad id 1)."""
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast

    tokenizer = RobertaTokenizerFast.from_pretrained(BPE)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=LAYERS, num_attention_heads=4,
                           intermediate_size=128, max_position_embeddings=64 + tokenizer.pad_token_id + 1,
                           pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id)
    d = tmp_path_factory.mktemp("roberta-teacher")
    RobertaForMaskedLM(config).save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


def write_roberta_spec(path, teacher_dir):
    """One candidate, two distillation steps, no early stopping; stsb at 64 examples; 32 tokens everywhere (the
    teacher takes 64); the reference rows that show what the distillation steps add (mlm_only, init_only-<rule>).
    random_init (no teacher involved) and task-specific distillation are left out: each costs a run."""
    spec = {
        "name": "tiny-roberta",
        "teacher": {"model": str(teacher_dir), "head_fit": {"eval_sequences": 16}},
        "corpus": {"path": str(CORPUS), "max_seq_len": 32, "max_sequences": 64},
        "student": {"n_layers": 2},
        "distill": {"num_workers": 1, "batch_size": 8, "steps": 2, "checkpoint_every": 2},
        "search": {"num_candidates": 1, "alpha_ce": 5.0, "alpha_mlm": 2.0, "alpha_cos": 1.0, "temperature": 2.0,
                   "layer_selection": "every_other"},
        "glue": {"data": str(GLUE), "tasks": TASKS, "max_seq_len": 32, "max_train_examples": 64,
                 "max_eval_examples": 64, "epochs": 1, "batch_size": 16, "lr": 1e-4,
                 "random_init_reference": False},
        "profile": {"seq_len": 32, "rounds": 2, "repeats_b1": 3, "repeats_b32": 1},
    }
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def roberta_sweep(tmp_path_factory, roberta_teacher_dir):
    work = tmp_path_factory.mktemp("roberta-sweep")
    spec = write_roberta_spec(work / "tiny-roberta.yaml", roberta_teacher_dir)
    out, _ = run_sweep_cli(spec, work)
    return out


def test_a_roberta_teacher_runs_a_sweep_to_a_leaderboard(roberta_sweep, roberta_teacher_dir):
    out = roberta_sweep
    df = pd.read_csv(out / "leaderboard.csv")
    kinds = df.set_index("model")["kind"]
    assert kinds["teacher"] == "teacher" and list(kinds).count("student") == 1
    assert kinds["mlm_only"] == kinds["init_only-every_other"] == "reference"
    scored = df[df.model.isin(["teacher", "mlm_only", "init_only-every_other"]) | (df.kind == "student")]
    assert len(scored) == 4 and (scored.status == "done").all()
    assert scored[[*TASKS, "macro_score"]].notna().all().all()
    mlm_only = json.loads((out / "references" / "mlm_only" / "result.json").read_text())
    assert mlm_only["distill"]["step"] == 2 and mlm_only["params"]["alpha_mlm"] == 1
    # The teacher kept its own LM head: nothing was fitted.
    assert not json.loads((out / "teacher" / "result.json").read_text())["head_fit"].get("fitted_head")


def test_the_saved_student_is_a_roberta_of_the_selected_teacher_layers(roberta_sweep, roberta_teacher_dir):
    from transformers import RobertaForMaskedLM

    out = roberta_sweep
    config = json.loads((out / "best_student" / "config.json").read_text())
    assert config["model_type"] == "roberta" and config["architectures"] == ["RobertaForMaskedLM"]
    assert config["num_hidden_layers"] == 2
    student = RobertaForMaskedLM.from_pretrained(out / "best_student")
    teacher = RobertaForMaskedLM.from_pretrained(roberta_teacher_dir)
    # Two distillation steps move each copied layer a little: it is still nearest to the teacher layer it
    # was copied from (independently initialised teacher layers lie far apart).
    selected = select_layers("every_other", LAYERS, 2)

    def weight(model, i):
        return model.roberta.encoder.layer[i].attention.self.query.weight

    nearest = [min(range(LAYERS), key=lambda j: (weight(student, i) - weight(teacher, j)).norm().item())
               for i in range(2)]
    assert nearest == list(selected)
