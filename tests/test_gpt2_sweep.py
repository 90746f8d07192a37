"""A GPT-2 teacher runs a whole sweep (issue 26): a randomly initialised tiny GPT-2 (4 layers, n_embd 64,
64 positions) with GPT-2's real BPE (../shared/models/gpt2-bpe), run as a user runs a sweep (`python
run_sweep.py run SPEC --output DIR` on a local Ray), distilled on real Wikipedia parquet and scored by
perplexity on the first articles of WikiText-2's test split (short windows). No GLUE: a spec with an LM
evaluation and no GLUE or own tasks is valid, and its first objective is the perplexity (minimised). No
GPT-2 weights exist offline; a hub id (gpt2) takes the same path on a networked machine."""

import json
import math

import pandas as pd
import pytest
import torch
import yaml

from distil.config.layers import select_layers
from tests.conftest import CORPUS, SHARED, run_sweep_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray-sweeps")]

BPE = SHARED / "models" / "gpt2-bpe"
WIKITEXT = SHARED / "data" / "corpus" / "wikitext-2-raw-v1"
LAYERS = 4
ARTICLES = 3


@pytest.fixture(scope="module")
def gpt2_teacher_dir(tmp_path_factory):
    """The tiny teacher saved as a sweep finds it: config.json (model_type gpt2), weights with the tied LM head,
    the tokenizer (no pad token, as GPT-2's own)."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    tokenizer = GPT2TokenizerFast.from_pretrained(BPE)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=LAYERS, n_head=4, n_positions=64,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    d = tmp_path_factory.mktemp("gpt2-teacher")
    GPT2LMHeadModel(config).save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


def write_gpt2_spec(path, teacher_dir):
    """Two candidates (alpha_clm 0 or 2: the random-init teacher's KL teaches little), two distillation steps in
    two rungs with early stopping at rf 2 (the proxy: perplexity on the corpus' 16 held-out eval sequences; one
    candidate is stopped after step 1), no glue section; perplexity on 3 WikiText articles with 32-token windows
    moved by 24; 32 tokens everywhere (the teacher takes 64); the reference rows that show what the distillation
    steps add (clm_only, init_only-<rule>). random_init and paper_defaults are left out: each costs a run."""
    spec = {
        "name": "tiny-gpt2",
        "teacher": {"model": str(teacher_dir), "head_fit": {"eval_sequences": 16}},
        "corpus": {"path": str(CORPUS), "max_seq_len": 32, "max_sequences": 64},
        "student": {"n_layers": 2},
        # No warmup: with warmup_ratio's default one of the 2 steps is warmup, and step 1 (rung 0) runs at lr 0,
        # leaving every student at rung 0 equal to its init (a tie: successive halving keeps both).
        "distill": {"num_workers": 1, "batch_size": 8, "steps": 2, "checkpoint_every": 2, "warmup_ratio": 0.0},
        "search": {"num_candidates": 2, "alpha_ce": 5.0, "alpha_mlm": 0.0, "alpha_clm": {"choices": [0.0, 2.0]},
                   "alpha_cos": 1.0, "temperature": 2.0, "layer_selection": "every_other",
                   "early_stopping": {"rungs": 2, "reduction_factor": 2}},
        "lm_eval": {"data": str(WIKITEXT), "window": 32, "stride": 24, "max_articles": ARTICLES, "batch_size": 16},
        "glue": {"random_init_reference": False},
        "profile": {"seq_len": 32, "rounds": 2, "repeats_b1": 3, "repeats_b32": 1},
    }
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def gpt2_sweep(tmp_path_factory, gpt2_teacher_dir):
    work = tmp_path_factory.mktemp("gpt2-sweep")
    spec = write_gpt2_spec(work / "tiny-gpt2.yaml", gpt2_teacher_dir)
    out, console = run_sweep_cli(spec, work)
    (work / "console.log").write_text(console)
    print(console[-4000:])
    return out


def test_a_gpt2_teacher_runs_a_sweep_to_a_perplexity_leaderboard(gpt2_sweep):
    out = gpt2_sweep
    df = pd.read_csv(out / "leaderboard.csv")
    print(df[["model", "kind", "status", "perplexity", "perplexity_lo", "perplexity_hi", "ppl_vs_teacher",
              "ppl_vs_teacher_lo", "ppl_vs_teacher_hi", "n_params", "latency_ms_b32"]].to_string())
    kinds = df.set_index("model")["kind"]
    assert kinds["teacher"] == "teacher" and list(kinds).count("student") == 2
    assert kinds["clm_only"] == kinds["init_only-every_other"] == "reference"
    assert "mlm_only" not in kinds and "macro_score" in df and df["macro_score"].isna().all()
    assert sorted(df.status) == ["done"] * 4 + ["stopped"] and len(df) == 5
    df = df[df.status == "done"]  # the stopped candidate has no scores
    for c in ("perplexity", "perplexity_lo", "perplexity_hi", "ppl_vs_teacher", "ppl_vs_teacher_lo",
              "ppl_vs_teacher_hi", "latency_ms_b32"):
        assert df[c].map(math.isfinite).all(), c
    assert (df.perplexity_lo <= df.perplexity).all() and (df.perplexity <= df.perplexity_hi).all()
    teacher = df.set_index("model").loc["teacher"]
    assert teacher.ppl_vs_teacher == pytest.approx(1.0)
    ratios = df.perplexity / teacher.perplexity
    assert ratios.to_numpy() == pytest.approx(df.ppl_vs_teacher.to_numpy())
    # Ranked by perplexity, lowest first (the first objective of a spec with lm_eval and no GLUE).
    assert list(df.perplexity) == sorted(df.perplexity)
    spec = json.loads((out / "spec.json").read_text())
    assert spec["search"]["objectives"] == ["perplexity"] and spec["glue"]["tasks"] == []
    clm_only = json.loads((out / "references" / "clm_only" / "result.json").read_text())
    assert clm_only["distill"]["step"] == 2 and clm_only["params"]["alpha_clm"] == 1
    assert clm_only["params"]["alpha_ce"] == clm_only["params"]["alpha_mlm"] == 0
    lm = json.loads((out / "teacher" / "result.json").read_text())["lm"]
    assert len(lm["titles"]) == ARTICLES and lm["window"] == 32 and lm["stride"] == 24
    (cand,) = [c for c in (out / "candidates").iterdir() if (c / "result.json").exists()]
    result = json.loads((cand / "result.json").read_text())
    # The search ranked it on the corpus' held-out eval sequences, the leaderboard reports WikiText.
    selection = result["lm"]["selection"]
    assert selection["sequences"] == 16 and selection["tokens"] > 16 and math.isfinite(selection["perplexity"])
    assert result["objectives"]["perplexity"] == pytest.approx(selection["perplexity"])
    assert df.set_index("model").loc[cand.name, "perplexity"] == pytest.approx(result["lm"]["perplexity"])
    assert "perplexity" in (out / "leaderboard.md").read_text()


def test_early_stopping_keeps_the_candidate_with_the_lower_held_out_perplexity(gpt2_sweep):
    """Rung 0 (step 1 of 2) scores both candidates by perplexity on the corpus' 16 held-out eval sequences:
    proxy_score = −ln PPL (nats per token), the gain over the undistilled init ln PPL_init − ln PPL_student.
    Successive halving at rf 2 keeps the higher gain and stops the other; the survivor's last-rung perplexity is
    its selection perplexity (same student, same sequences). The teacher has its proxy point, and the Optuna
    study (minimising perplexity) holds ln PPL as each rung's intermediate value."""
    import optuna

    from distil.search.halving import rung_score
    from distil.store.records import ResultsDir

    said = [ln for ln in (gpt2_sweep.parent / "console.log").read_text().splitlines() if "rung" in ln]
    print("\n".join(said))  # the sweep's own words on each rung and the stop
    assert any("rung 0 at step 1" in ln for ln in said)
    results = ResultsDir(gpt2_sweep)
    init = results.init_only("every_other").read_init_proxy(2)
    assert init.proxy["sequences"] == 16 and init.proxy_score == pytest.approx(-math.log(init.proxy["perplexity"]))
    teacher = results.teacher().read_proxy()
    assert teacher.proxy["sequences"] == 16 and math.isfinite(teacher.proxy_score)
    cands = {c.name: c for c in results.candidates()}
    (done,) = [n for n, c in cands.items() if c.has_result()]
    (stopped,) = [n for n, c in cands.items() if not c.has_result()]
    rungs = {n: c.read_rungs() for n, c in cands.items()}
    for name, rs in rungs.items():
        for r in rs:
            print(f"{name} rung {r.rung} step {r.step}: held-out perplexity {r.proxy.proxy['perplexity']:.2f} "
                  f"(init {init.proxy['perplexity']:.2f}, teacher {teacher.proxy['perplexity']:.2f}), proxy_score "
                  f"{r.proxy_score:.4f}, gain over init {r.gain_over_init:+.4f} nats/token")
            assert r.proxy_score == pytest.approx(-math.log(r.proxy.proxy["perplexity"]))
            assert r.gain_over_init == pytest.approx(math.log(init.proxy["perplexity"])
                                                     - math.log(r.proxy.proxy["perplexity"]))
    status = cands[stopped].read_status()
    assert status.status == "stopped" and status.rung == 0 and [r.rung for r in rungs[stopped]] == [0]
    assert [r.rung for r in rungs[done]] == [0, 1] and [r.step for r in rungs[done]] == [1, 2]
    score = {n: rung_score(rs[0].proxy_score, rs[0].gain_over_init) for n, rs in rungs.items()}
    assert score[done] > score[stopped]  # the lower rung-0 perplexity went on
    selection = cands[done].read_result().lm["selection"]
    assert rungs[done][-1].proxy.proxy["perplexity"] == pytest.approx(selection["perplexity"], rel=1e-6)
    study = optuna.load_study(study_name="tiny-gpt2", storage=results.optuna_url())
    by_trial = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    assert by_trial[stopped].state == optuna.trial.TrialState.PRUNED
    for name, rs in rungs.items():
        assert by_trial[name].intermediate_values == pytest.approx({r.rung: -r.proxy_score for r in rs})


def test_the_best_student_is_a_2_layer_gpt2_of_the_selected_teacher_layers_with_a_pad_token(gpt2_sweep,
                                                                                           gpt2_teacher_dir):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    out = gpt2_sweep
    config = json.loads((out / "best_student" / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["architectures"] == ["GPT2LMHeadModel"]
    assert config["n_layer"] == 2
    tokenizer = AutoTokenizer.from_pretrained(out / "best_student")
    assert tokenizer.pad_token == "<|endoftext|>" and config["pad_token_id"] == tokenizer.pad_token_id
    student = GPT2LMHeadModel.from_pretrained(out / "best_student")
    teacher = GPT2LMHeadModel.from_pretrained(gpt2_teacher_dir)

    def weight(model, i):
        return model.transformer.h[i].attn.c_attn.weight

    nearest = [min(range(LAYERS), key=lambda j: (weight(student, i) - weight(teacher, j)).norm().item())
               for i in range(2)]
    assert nearest == list(select_layers("every_other", LAYERS, 2))
    assert "AutoModelForCausalLM" in (out / "best_student" / "README.md").read_text()
