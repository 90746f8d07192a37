"""`report` never crashes and never deletes: a damaged or partial file makes its row `corrupt`
with the reason, every other row and file is still written, the exported student stays."""

import hashlib
import json
import subprocess
import sys

import pandas as pd

from distil.report import leaderboard
from tests.conftest import ROOT
from tests.handmade import SPEC, labels_for, noisy, write_json, write_row


def _results(tmp_path):
    data = {"sst2": labels_for("sst2", 200)}

    def preds(q, s):
        return {"sst2": {0: noisy(data["sst2"][1], q, s)}}

    write_json(tmp_path / "spec.json", SPEC)
    write_row(tmp_path / "teacher", "teacher", preds(0.1, 1), data, {"model": "t"})
    for i, name in enumerate(["good", "broken", "partial"]):
        write_row(tmp_path / "candidates" / name, "student", preds(0.2 + 0.05 * i, 2 + i), data,
                  {"alpha_ce": 1.0 + i, "layer_selection": "first"})
        write_json(tmp_path / "candidates" / name / "config.json",
                   {"params": {"alpha_ce": 1.0 + i}, "started": float(i)})
    return tmp_path


def test_damaged_files_make_corrupt_rows_and_the_rest_is_reported(tmp_path):
    out = _results(tmp_path)
    text = (out / "candidates" / "broken" / "result.json").read_text()
    (out / "candidates" / "broken" / "result.json").write_text(text[: len(text) // 2])  # truncated JSON
    # Keys missing.
    (out / "candidates" / "partial" / "result.json").write_text(json.dumps({"glue": [{"task": "sst2"}]}))
    by = leaderboard.load(out).frame.set_index("model")
    assert by.at["broken", "status"] == "corrupt" and "result.json: JSONDecodeError" in by.at["broken", "reason"]
    assert by.at["partial", "status"] == "corrupt" and "result.json: KeyError" in by.at["partial", "reason"]
    assert by.at["good", "status"] == "done"
    assert pd.notna(by.at["good", "sst2"]) and pd.notna(by.at["good", "pct_teacher"])


def test_report_keeps_the_old_export_when_the_winner_has_no_weights(tmp_path):
    out = _results(tmp_path)
    (out / "best_student").mkdir()
    (out / "best_student" / "model.safetensors").write_bytes(b"the earlier export")
    before = hashlib.sha256((out / "best_student" / "model.safetensors").read_bytes()).hexdigest()
    (out / "candidates" / "broken" / "config.json").write_text("{")  # a damaged config too
    r = subprocess.run([sys.executable, "run_sweep.py", "report", str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "warning: best student not exported" in r.stderr
    assert "warning: broken: corrupt (config.json" in r.stderr
    after = hashlib.sha256((out / "best_student" / "model.safetensors").read_bytes()).hexdigest()
    assert after == before  # nothing already exported is removed without its replacement
    assert (out / "leaderboard.csv").exists() and (out / "report.html").exists()
