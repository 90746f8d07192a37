"""A causal (gpt2) sweep's leaderboard and search direction (issue 26), fast tier: the perplexity the leaderboard
shows for a row is the one a loop over tokens computes by hand from the model's logits; rows rank lowest
perplexity first, the best student is the lowest, ppl_vs_teacher is the ratio with its interval; the search
minimises perplexity (Tune's mode, the best candidate's rule). A real tiny GPT-2 (random init, GPT-2's real BPE)
scored by the sweep's own function (distil.evaluation.perplexity.score_saved_model) on a WikiText-format parquet
written here; results dirs written with the sweep's records (distil.store.records)."""

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

from distil.config.spec import load_spec
from distil.evaluation.perplexity import score_saved_model, sequence_perplexity
from distil.evaluation.scores import selection_row
from distil.report import leaderboard, summary
from distil.science.student import save_student
from distil.search.references import best_candidate_rule
from distil.search.tuner import objectives
from distil.store.records import Result, ResultsDir
from tests.conftest import CORPUS, SHARED

BPE = SHARED / "models" / "gpt2-bpe"
# Two WikiText-format articles (title row, blank rows, text rows with their leading space and "\n"), each
# shorter than the window: every token is scored with all tokens before it as context.
ROWS = ["", " = Alpha = \n", "", " The cat sat on the mat , and the dog slept . \n", "",
        " = Beta = \n", "", " A river runs through the old town in spring . \n", " It floods . \n"]
WINDOW, STRIDE = 64, 32


@pytest.fixture(scope="module")
def wiki(tmp_path_factory):
    d = tmp_path_factory.mktemp("wiki")
    pq.write_table(pa.table({"text": ROWS}), d / "test.parquet")
    return d


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    tokenizer = GPT2TokenizerFast.from_pretrained(BPE)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=4, n_head=4, n_positions=WINDOW)
    d = tmp_path_factory.mktemp("gpt2-teacher")
    GPT2LMHeadModel(config).save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


def perplexity_by_hand(model_dir, rows) -> float:
    """exp(mean NLL) over every token of every article: for each token, the model run on all tokens before it
    (<|endoftext|> first), the log-softmax of the last position's logits at the token's id."""
    tokenizer = GPT2TokenizerFast.from_pretrained(model_dir)
    model = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    starts = [i for i, r in enumerate(rows) if r.startswith(" = ") and not r.startswith(" = = ")]
    articles = ["".join(r or "\n" for r in rows[a:b]) for a, b in zip(starts, [*starts[1:], len(rows)])]
    nll, n = 0.0, 0
    with torch.no_grad():
        for text in articles:
            ids = [tokenizer.eos_token_id] + tokenizer(text)["input_ids"]
            assert len(ids) <= WINDOW
            for p in range(1, len(ids)):
                logits = model(input_ids=torch.tensor([ids[:p]])).logits[0, -1]
                nll -= torch.log_softmax(logits.double(), -1)[ids[p]].item()
                n += 1
    return math.exp(nll / n)


@pytest.fixture(scope="module")
def results(tmp_path_factory, teacher_dir, wiki):
    """A results dir as a gpt2 sweep leaves it: spec.json (lm_eval, objectives [perplexity]), the teacher's
    row, and two candidates whose students are 2 of the teacher's layers and a random init."""
    out = ResultsDir(tmp_path_factory.mktemp("results"))
    out.write_spec(json.dumps({"name": "tiny", "glue": {"tasks": []}, "search": {"objectives": ["perplexity"]},
                               "lm_eval": {"data": str(wiki), "window": WINDOW, "stride": STRIDE}}))

    def lm(model_dir):
        return score_saved_model(str(model_dir), wiki, window=WINDOW, stride=STRIDE)

    out.teacher().write_result(Result(kind="teacher", params={"model": str(teacher_dir)}, lm=lm(teacher_dir)))
    for trial, rule in (("t0", "every_other"), ("t1", "random_init")):
        cand = out.candidate(trial)
        save_student(str(teacher_dir), 2, rule, 0, str(cand.student_dir))
        scored = lm(cand.student_dir)
        cand.write_result(Result(kind="student", params={"layer_selection": rule, "n_layers": 2, "alpha_ce": 5.0,
                                                        "alpha_mlm": 0.0, "alpha_clm": 2.0},
                                 objectives={"perplexity": scored["perplexity"]}, lm=scored))
    # The paper defaults' row: the random init's student re-scored (any model of this tokenizer will do).
    paper = out.reference("paper_defaults")
    paper.write_result(Result(kind="reference", params={"layer_selection": "random_init", "n_layers": 2},
                              lm=lm(out.candidate("t1").student_dir)))
    return out


def test_a_perplexity_by_hand_matches_the_leaderboards(results, teacher_dir):
    df = leaderboard.load(results.path, resamples=200).frame.set_index("model")
    assert df.loc["teacher", "perplexity"] == pytest.approx(perplexity_by_hand(teacher_dir, ROWS), rel=1e-6)
    student = results.candidate("t0").student_dir
    assert df.loc["t0", "perplexity"] == pytest.approx(perplexity_by_hand(student, ROWS), rel=1e-6)


def test_rows_rank_lowest_perplexity_first_with_intervals_and_ratios(results):
    board = leaderboard.load(results.path, resamples=200)
    df = board.frame
    assert board.rank_by == "perplexity" and list(df.perplexity) == sorted(df.perplexity)
    best = board.best_student()
    students = df[df.kind == "student"]
    assert best["perplexity"] == students.perplexity.min()
    teacher = df[df.kind == "teacher"].iloc[0]
    assert (df.ppl_vs_teacher.to_numpy() == pytest.approx((df.perplexity / teacher.perplexity).to_numpy()))
    assert ((df.perplexity_lo <= df.perplexity) & (df.perplexity <= df.perplexity_hi)).all()
    # Two articles: the interval spans their two perplexities, not a point.
    assert (df.perplexity_hi > df.perplexity_lo).all()
    assert teacher.ppl_vs_teacher_lo == teacher.ppl_vs_teacher_hi == pytest.approx(1.0)
    assert "alpha_clm" in df and list(df.columns).index("alpha_clm") == list(df.columns).index("alpha_mlm") + 1
    paper = df[df.model == "paper_defaults"].iloc[0]
    assert (df.ppl_vs_default.to_numpy() == pytest.approx((df.perplexity / paper.perplexity).to_numpy()))
    head = summary.headline(board)
    assert head.startswith(f"best student `{best['model']}`: perplexity {best['perplexity']:.2f}")
    assert f"vs paper defaults ×{best['ppl_vs_default']:.3f}" in head
    assert "the teacher's" in head and board.metadata()["perplexity"]["articles"] == 2


def test_the_search_minimises_perplexity(results, wiki, tmp_path):
    spec = {"name": "tiny", "corpus": {"path": str(CORPUS)}, "lm_eval": {"data": str(wiki)},
            "search": {"alpha_mlm": 0.0, "alpha_clm": 2.0}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    loaded = load_spec(tmp_path / "s.yaml")
    assert loaded.glue.tasks == [] and loaded.search.objectives == ["perplexity"]
    assert objectives(loaded) == (["perplexity"], ["min"])
    lowest = min(("t0", "t1"), key=lambda t: results.candidate(t).read_result().objectives["perplexity"])
    rule = results.candidate(lowest).read_result().params["layer_selection"]
    assert best_candidate_rule(results.path, "perplexity") == rule


def test_the_selection_perplexity_is_transformers_own_loss_on_held_out_sequences(teacher_dir):
    """What the search ranks a candidate by (sequence_perplexity on the corpus' held-out eval sequences, `bos piece
    eos`) is exp of transformers' own `labels=` loss on those sequences, padded; selection_row takes it from
    result["lm"]["selection"], never the WikiText perplexity the leaderboard reports."""
    from distil.science.data import pad_batch
    from distil.science.losses import causal_labels

    tokenizer = GPT2TokenizerFast.from_pretrained(teacher_dir)
    model = GPT2LMHeadModel.from_pretrained(teacher_dir).eval()
    eos = tokenizer.eos_token_id
    seqs = [torch.tensor([eos, *tokenizer(t)["input_ids"], eos]) for t in
            ("The cat sat on the mat.", "A river runs through the old town in spring, and it floods.", "Short.")]
    got = sequence_perplexity(model, seqs, batch_size=2)  # two batches, padded differently
    ids, attn = pad_batch(seqs, 0)
    with torch.no_grad():
        loss = model(input_ids=ids, attention_mask=attn, labels=causal_labels(ids, attn)).loss
    assert got["perplexity"] == pytest.approx(math.exp(loss.item()), rel=1e-5)
    assert got["tokens"] == sum(len(s) - 1 for s in seqs) and got["sequences"] == 3
    result = {"lm": {"perplexity": 99.0, "selection": got}}
    assert selection_row(result)["perplexity"] == got["perplexity"]
