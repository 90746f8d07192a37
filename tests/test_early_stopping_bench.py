"""benchmarks/early_stopping.py's analysis on hand-made full arms: results dirs written through
distil.store.records as a sweep with every trial promoted at every rung writes them (8 trials, 3
rungs at rf 3, a known final macro). No Ray cluster, no sweep: seconds."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from benchmarks import early_stopping as bench
from distil.config.spec import load_spec
from distil.store.records import ProxyPoint, Result, ResultsDir, Rung, TrialConfig
from tests.conftest import ROOT
from tests.test_docs import MACHINE_PATH
from tests.test_halving import run_sweep


MACROS = [40.0 + i for i in range(8)]  # trial t7 is the true best, t6 and t7 the true top 2
RUN_SECONDS = (10.0, 20.0, 30.0)  # each rung's Train loop (distill.run_seconds)
WALL = 999.0  # each rung's distill_seconds: the trial's wall time, queueing included (not counted)
PROXY_S, GLUE_S, INIT_S = 5.0, 100.0, 7.0


def _spec(tmp_path, tolerance=0.0):
    """sweeps/bench-early-stopping.yaml with 2 Train workers, 3 rungs at rf 3 and `tolerance`
    (whatever the shipped file says now), as a YAML file and as the validated spec."""
    raw = yaml.safe_load((ROOT / "sweeps" / "bench-early-stopping.yaml").read_text())
    raw["distill"]["num_workers"] = 2
    raw["search"]["early_stopping"].update(rungs=3, reduction_factor=3, tolerance=tolerance)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, load_spec(path)


def write_full_arm(path, gains, inits=None, rules=None, run_seconds=RUN_SECONDS, selection=None):
    """A full arm: trial t<i> has final macro MACROS[i], gain over init gains[i][k] at rung k (its
    proxy score: inits[i] + that), the costs above, and selection score selection[i] in result.json's
    objectives (none when `selection` is None). Returns the results dir."""
    out = ResultsDir(path)
    out.write_spec('{"name": "synthetic", "search": {"early_stopping": '
                   '{"rungs": 3, "reduction_factor": 3, "tolerance": 1e9}}}')
    inits = inits or [20.0] * len(gains)
    rules = rules or ["every_other"] * len(gains)
    for i, (g, init, rule, macro) in enumerate(zip(gains, inits, rules, MACROS)):
        params = {"layer_selection": rule, "n_layers": 3}
        rungs = [Rung(rung=k, fraction=3.0 ** (k - 2), step=6 * 3 ** k, tokens=100, distill_seconds=WALL,
                      distill={} if run_seconds is None else {"run_seconds": run_seconds[k]}, rung_budget=3 ** k,
                      proxy=ProxyPoint({"sst2": init + g[k]}, proxy_score=init + g[k], proxy_seconds=PROXY_S),
                      init_proxy_score=init) for k in range(3)]
        cand = out.candidate(f"t{i}")
        cand.write_config(TrialConfig(params=params, started=1.7e9 + i))
        cand.write_rungs(rungs)
        glue = ({"task": "sst2", "seed": 0, "scores": {"": {"accuracy": macro}}, "seconds": GLUE_S},)
        objectives = None if selection is None else {"macro_score": selection[i]}
        cand.write_result(Result(kind="student", params=params, glue=glue, rungs=tuple(rungs), finetune_seconds=GLUE_S,
                                 objectives=objectives))
    for rule, init in set(zip(rules, inits)):
        out.init_only(rule).write_init_proxy(3, ProxyPoint({"sst2": init}, proxy_score=init, proxy_seconds=INIT_S))
    return path


def _faithful():  # each rung's gain ranks the trials as their final macro does
    return [[(m - 40.0) * (k + 1) for k in range(3)] for m in MACROS]


def _by_rule(rows):
    return {r["rule"]: r for r in rows}


def test_a_proxy_that_ranks_as_the_final_macro_keeps_the_best_under_every_rule_and_saves_compute(tmp_path):
    path, spec = _spec(tmp_path)
    arm = bench.load_full_arm(write_full_arm(tmp_path / "arm", _faithful()), spec)
    assert [t.macro for t in arm.trials] == MACROS and arm.notes == [] and arm.steps == [6, 18, 54]
    for r in bench.rank_agreement(arm.trials, resamples=200):
        assert r["tau"] == pytest.approx(1.0) and r["lo"] == pytest.approx(1.0) and r["hi"] == pytest.approx(1.0)
    rules = _by_rule(bench.replay_rules(arm, spec, orders=100))
    assert len(rules) == 4
    for r in rules.values():
        assert r["best"] == 1.0 and r["any2"] == 1.0 and r["lost"] == 0.0, r
        assert r["saved"][1] > 0 and r["saved_no_es"][1] > 0, r
    # successive halving at tolerance 0: 8 -> 2 -> 1 -> 1, the same in every order; only t7 gets GLUE
    for label in ("successive halving, gain over init", "successive halving, raw proxy"):
        assert rules[label]["finished"] == 1.0 and rules[label]["top2"] == 0.0


def test_a_proxy_that_ranks_against_the_final_macro_loses_the_top_two(tmp_path):
    """The same rung scores given to the trials in reverse: the worst by final macro scores best.
    Successive halving never sends t6 or t7 to GLUE; ASHA does only when one of them is proposed
    first (its rung has no score to compare with yet): about 1 order in 4."""
    path, spec = _spec(tmp_path)
    faithful = bench.replay_rules(bench.load_full_arm(write_full_arm(tmp_path / "a", _faithful()), spec), spec)
    arm = bench.load_full_arm(write_full_arm(tmp_path / "b", _faithful()[::-1]), spec)
    for r in bench.rank_agreement(arm.trials, resamples=200):
        assert r["tau"] == pytest.approx(-1.0)
    rules = _by_rule(bench.replay_rules(arm, spec, orders=100))
    for before, r in zip(faithful, rules.values()):
        assert r["any2"] < before["any2"] and r["best"] < before["best"], r
    assert rules["successive halving, gain over init"]["any2"] == 0.0
    assert rules["successive halving, gain over init"]["lost"] == pytest.approx(7.0)  # t0 (40) goes to GLUE
    assert 0.05 < rules["ASHA (the old rule), raw proxy"]["any2"] < 0.5


def test_deciding_on_the_gain_keeps_a_rule_that_starts_low(tmp_path):
    """t6 and t7 use `first`, whose undistilled student scores 0; the others `every_other` at 30.
    The gains rank as the final macro, the raw scores put t6 and t7 last at rung 0."""
    path, spec = _spec(tmp_path)
    rules_of = ["every_other"] * 6 + ["first"] * 2
    inits = [30.0] * 6 + [0.0] * 2
    arm = bench.load_full_arm(write_full_arm(tmp_path / "arm", _faithful(), inits, rules_of), spec)
    ranks = {(r["rung"], r["kind"]): r["tau"] for r in bench.rank_agreement(arm.trials, resamples=200)}
    assert ranks[0, "gain"] == pytest.approx(1.0) and ranks[0, "raw"] < 0.5
    rules = _by_rule(bench.replay_rules(arm, spec, orders=20))
    assert rules["successive halving, gain over init"]["best"] == 1.0
    assert rules["successive halving, raw proxy"]["best"] == 0.0


def test_compute_is_counted_from_the_train_loops_busy_seconds_the_proxies_and_glue(tmp_path):
    """Per rung run: run_seconds x 2 workers + 5 s of proxy; per trial reaching GLUE: 100 s; with a
    gain rule, the one init proxy (7 s). The rungs' wall time (999 s each) is not counted."""
    path, spec = _spec(tmp_path)
    arm = bench.load_full_arm(write_full_arm(tmp_path / "arm", _faithful()), spec)
    full_arm = 8 * (2 * (10 + 20 + 30) + 3 * PROXY_S + GLUE_S) + INIT_S  # 1887
    no_es = 8 * (2 * (10 + 20 + 30) + GLUE_S)  # 1760: no proxy, no init proxy
    halving = 8 * (2 * 10 + PROXY_S) + 2 * (2 * 20 + PROXY_S) + (2 * 30 + PROXY_S) + GLUE_S  # 8 -> 2 -> 1 -> GLUE
    assert bench.arm_cost(arm.trials, [3] * 8, set(range(8)), arm.init, gain=True) == full_arm == 1887
    assert bench.arm_cost(arm.trials, [1, 1, 1, 1, 1, 1, 2, 3], {7}, arm.init, gain=True) == halving + INIT_S
    assert bench.arm_cost(arm.trials, [1, 1, 1, 1, 1, 1, 2, 3], {7}, arm.init, gain=False) == halving == 455
    assert arm.unbusy_seconds == 8 * ((WALL - 10) + (WALL - 20) + (WALL - 30))
    rules = _by_rule(bench.replay_rules(arm, spec, orders=10))
    gain, raw = rules["successive halving, gain over init"], rules["successive halving, raw proxy"]
    assert gain["saved"] == pytest.approx((1 - 462 / full_arm,) * 3)
    assert no_es == 1760 and gain["saved_no_es"] == pytest.approx((1 - 462 / no_es,) * 3)
    assert raw["saved"] == pytest.approx((1 - 455 / full_arm,) * 3)

    # Rungs written before the Train runs reported their own time: their wall time, said in the notes.
    old = bench.load_full_arm(write_full_arm(tmp_path / "old", _faithful(), run_seconds=None), spec)
    assert old.trials[0].distill == (2 * WALL,) * 3 and any("run_seconds" in n for n in old.notes)


def test_the_replay_decides_as_the_halving_tests_driver(tmp_path):
    """bench.replay is tests/test_halving.py's run_sweep trimmed to fixed scores: the same rungs
    reached and the same trials at GLUE, for successive halving and for ASHA."""
    path, spec = _spec(tmp_path)
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.normal(size=(8, 3)).tolist()
        for label, (kind, tol, make) in bench.stopping_rules(spec, 8, str(tmp_path / "scratch")).items():
            reached, full = bench.replay(make(), scores, rf=3)
            theirs = run_sweep(make(), scores)
            assert (dict(enumerate(reached)), full) == (theirs["reached"], theirs["full"]), label


def test_the_command_line_analyses_a_finished_full_arm_and_writes_its_page(tmp_path, capsys):
    path, spec = _spec(tmp_path)
    arm = write_full_arm(tmp_path / "arm", _faithful())
    page = tmp_path / "page.md"
    bench.main(["--from", str(arm), "--spec", str(path), "--orders", "5", "--resamples", "100",
                "--write-page", str(page)])
    printed = capsys.readouterr().out
    assert "| 0 (6) | gain over init | +1.00 | [+1.00, +1.00] | 0 |" in printed
    assert "Full arm: 1887 busy core-seconds" in printed
    text = page.read_text()
    assert text.startswith("# 20") and "**Commit:**" in text and "**Machine:**" in text and "--orders 5" in text
    assert not MACHINE_PATH.search(text), MACHINE_PATH.search(text)  # tests/test_docs.py's rule for pages
    assert re.search(r"\| successive halving, gain over init \| 0 \| 1\.00 \| 100 % \| 0 % \| 100 % \|", text)


def test_the_ceiling_is_the_full_protocols_selection_score_against_the_final_macro(tmp_path):
    """The last rank-agreement row: the full protocol's selection score (result.json objectives) against the
    final macro. Selection in the reverse order of the macro gives tau -1; no objectives, no row."""
    path, spec = _spec(tmp_path)
    reverse = write_full_arm(tmp_path / "reverse", _faithful(), selection=[60.0 - i for i in range(8)])
    rows = bench.rank_agreement(bench.load_full_arm(reverse, spec).trials, resamples=200)
    assert (rows[-1]["rung"], rows[-1]["kind"]) == (None, "selection") and rows[-1]["tau"] == pytest.approx(-1.0)
    assert [r["tau"] for r in rows[:-1]] == pytest.approx([1.0] * 6)  # the proxies still rank as the macro
    arm = bench.load_full_arm(reverse, spec)
    page = bench.markdown(arm, spec, rows, bench.replay_rules(arm, spec, orders=3), 200)
    ceiling = "the full protocol's selection score (held-out training rows): the ceiling"
    assert f"| full protocol | {ceiling} | -1.00 |" in page
    bare = write_full_arm(tmp_path / "bare", _faithful())
    assert all(r["kind"] != "selection" for r in bench.rank_agreement(bench.load_full_arm(bare, spec).trials,
                                                                       resamples=50))
