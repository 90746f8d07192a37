"""distil.store.records: the results layout is written and read back as the sweep has always written it."""

from __future__ import annotations

import json

import pytest

from distil.store.records import (PROXY, ProxyPoint, Result, ResultsDir, Rung, RunState, TrialConfig, TrialStatus,
                                  init_only_name, write_json)

RUN = {"task": "sst2", "seed": 0, "scores": {"": {"accuracy": 80.0}}, "subset_splits": [], "n_train": 10, "n_eval": 5,
       "seconds": 1.5}
# A rung and a student's result.json as distil/search wrote them before records.py existed (key order included).
RUNG = {"rung": 0, "fraction": 0.5, "step": 3, "tokens": 1200, "distill": {"loss": 2.5, "step": 3},
        "distill_seconds": 4.2, "rung_budget": 1, "proxy": {"sst2": 55.0}, PROXY: 55.0, "proxy_seconds": 2.0}
STUDENT = {"kind": "student", "params": {"alpha_ce": 5.0, "layer_selection": "every_other", "n_layers": 2},
           "distill": {"loss": 2.5}, "rungs": [RUNG], "glue": [RUN], "n_params": 1000, "profile": {"size_mb": 1.0},
           "distill_seconds": 4.2, "proxy_seconds": 2.0, "finetune_seconds": 1.5, "provenance": {"git": "abc"},
           "objectives": {"macro_score": None}}
MLM_ONLY = {"kind": "reference", "params": {"alpha_mlm": 1.0}, "distill": {"loss": 7.0}, "glue": [RUN], "n_params": 10,
            "profile": {"size_mb": 1.0}, "distill_seconds": 3.0, "finetune_seconds": 1.5, "provenance": {}}


@pytest.mark.parametrize("written", [STUDENT, MLM_ONLY])
def test_student_and_mlm_only_results_round_trip_byte_for_byte(written):
    assert json.dumps(Result.from_json(written).to_json()) == json.dumps(written)


def test_reference_rows_keep_every_key_and_value():
    # A reference row's keys were written in another order (glue and finetune_seconds last): same content.
    teacher = {"kind": "teacher", "params": {"model": "t"}, "head_fit": {"steps": 0}, "n_params": 5, "profile": {},
               "provenance": {"git": "abc"}, "glue": [RUN], "finetune_seconds": 1.5}
    kd = {"kind": "task_distill", "params": {"task": "sst2"}, "provenance": {}, "glue": [RUN], "finetune_seconds": 1.5}
    for written in (teacher, kd):
        assert Result.from_json(written).to_json() == written


def test_old_results_read_with_missing_keys():
    # Written before profiles, objectives, rungs existed: the absent fields read as None and stay absent.
    old = {"params": {"alpha_ce": 1.0}, "glue": [RUN]}
    r = Result.from_json(old)
    assert r.kind is None and r.profile is None and r.rungs is None and r.to_json() == old
    with pytest.raises(ValueError):
        Result.from_json([1, 2])


def test_candidate_files(tmp_path):
    out = ResultsDir(tmp_path)
    cand = out.candidate("t1")
    assert cand.read_rungs() == [] and cand.read_config() is None and cand.read_status() is None
    cand.write_config(TrialConfig(params={"alpha_ce": 5.0}, started=12.5, label="paper defaults"))
    cand.write_rungs([Rung.from_json(RUNG)])
    assert json.loads(cand.progress_file.read_text()) == {"rungs": [RUNG]}
    assert cand.read_rungs()[0].proxy_score == 55.0 and cand.read_config().label == "paper defaults"
    stopped = TrialStatus("stopped", "stopped early by ASHA on proxy_score", rung=0, proxy_score=55.0, step=3)
    cand.write_status(stopped)
    assert list(json.loads(cand.status_file.read_text())) == ["status", "rung", PROXY, "step", "reason"]
    assert cand.read_status() == stopped
    cand.write_status(TrialStatus("failed", "RuntimeError: boom"))
    assert json.loads(cand.status_file.read_text()) == {"status": "failed", "reason": "RuntimeError: boom"}
    assert out.failed_trials() == ["t1"]
    cand.clear_status()
    assert out.failed_trials() == [] and [c.name for c in out.candidates()] == ["t1"]


def test_rows_references_and_run_state(tmp_path):
    out = ResultsDir(tmp_path)
    assert list(out.rows()) == [] and out.read_spec() is None
    out.teacher().write_result(Result(kind="teacher", params={"model": "t"}, glue=(RUN,)))
    out.init_only("0,2").write_result(Result(kind="reference", params={"layer_selection": "0,2"}, glue=(RUN,)))
    out.init_only("0,2").write_init_proxy(2, ProxyPoint({"sst2": 50.0}, 50.0, 1.0))
    out.teacher().write_proxy(ProxyPoint({"sst2": 70.0}, 70.0, 1.0))
    assert init_only_name("0,2") == "init_only-0-2"
    assert (tmp_path / "references" / "init_only-0-2" / "proxy-2L.json").exists()
    assert out.init_onlys()[0].rule == "0-2" and list(out.init_onlys()[0].init_proxies()) == [2]
    assert out.teacher().read_proxy().proxy_score == 70.0 and out.init_only("0,2").read_init_proxy(3) is None
    assert [r.name for r in out.rows()] == ["teacher", "init_only-0-2"]
    assert out.finished_references() == {"teacher", "init_only-0-2"}
    state = RunState(n_layers=2, cache_dir="/c", profiles={"teacher": {}}, provenance={"git": "x"})
    out.write_run_state(state)
    assert out.read_run_state() == state
    assert out.run_file.read_text() == json.dumps(state.to_json(), indent=2)  # as run_sweep.py wrote it
    write_json(out.spec_file, {"name": "s"})
    assert out.sweep_name() == "s"
    out.spec_file.write_text('{"name": "s", "gl')  # truncated: no spec, not an exception
    assert out.read_spec() is None and out.sweep_name() == tmp_path.name
    with pytest.raises(KeyError):
        RunState.from_json({"n_layers": 2})
