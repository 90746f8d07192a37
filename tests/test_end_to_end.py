"""A real tiny sweep: real Ray (local cluster), real teacher, real Wikipedia and GLUE parquet."""

import json
import subprocess
import sys

import pandas as pd

from distil import leaderboard
from tests.conftest import ROOT
from tests.tiny_spec import write_tiny_spec


def test_tiny_sweep_end_to_end(tmp_path):
    spec = write_tiny_spec(tmp_path / "tiny.yaml")
    out = tmp_path / "results"
    r = subprocess.run([sys.executable, "run_sweep.py", str(spec), "--output", str(out), "--cache-dir", str(tmp_path / "cache")],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    df = pd.read_csv(out / "leaderboard.csv")
    kinds = df.set_index("model")["kind"]
    assert list(kinds).count("student") == 2 and kinds["teacher"] == "teacher"
    assert kinds["random_init"] == "reference" and kinds["task-kd-wnli"] == "task_distill"
    assert (df["status"] == "done").all()
    scored = df[df.kind != "task_distill"]
    assert scored[["wnli", "stsb", "macro_score", "gain_over_random_init"]].notna().all().all()
    # Task-specific distillation: scored on its task, from the teacher fine-tuned on it.
    kd = df[df.kind == "task_distill"].iloc[0]
    assert pd.notna(kd["wnli"]) and pd.isna(kd["stsb"]) and pd.isna(kd["macro_score"])
    assert (out / "teacher" / "finetuned" / "wnli" / "model.safetensors").exists()
    assert df["mnli_m"].isna().all()  # not asked for: empty, never invented
    assert set(df.loc[df.kind == "student", "layer_selection"]) <= {"first", "last"}
    # The fitted teacher head was reported and cached; the students are loadable HF dirs.
    teacher = json.loads((out / "teacher" / "result.json").read_text())
    assert teacher["head_fit"]["fitted_head"] and list((tmp_path / "cache").glob("teacher-*/model.safetensors"))
    from transformers import AutoModelForSequenceClassification

    for cand in (out / "candidates").iterdir():
        model = AutoModelForSequenceClassification.from_pretrained(cand / "student", num_labels=2)
        assert model.config.model_type == "distilbert" and model.config.n_layers == 2
        assert len(list((cand / "predictions").glob("*.parquet"))) == 2
    # The report rebuilds the same leaderboard from the stored files.
    (out / "leaderboard.csv").unlink()
    rebuilt = subprocess.run([sys.executable, "run_sweep.py", "report", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert rebuilt.returncode == 0 and "| teacher" in rebuilt.stdout
    pd.testing.assert_frame_equal(pd.read_csv(out / "leaderboard.csv"), df)
    assert len(leaderboard.load(out)) == 5
