import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from distil.config.spec import SpecError, layer_key, load_spec, parse_layer_key, read_yaml
from tests.conftest import dry_run_shipped

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["smoke", "cpu", "distilbert-base", "news-emotions", "smoke-tasks"])
def test_shipped_specs_validate(name):
    spec = load_spec(ROOT / "sweeps" / f"{name}.yaml")
    assert spec.name == name
    assert spec.search.num_candidates >= 4


def _write(tmp_path, **changes):
    raw = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    for dotted, value in changes.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"distill.stepz": 3}, r"distill\.stepz: unknown key"),
        ({"distill.steps": "many"}, r"distill\.steps: Input should be a valid integer"),
        ({"distill.num_workers": 0}, r"distill\.num_workers: Input should be greater than or equal to 1"),
        ({"distill.bf16": "fast"}, r"distill\.bf16: give true, false or auto .*not 'fast'"),
        ({"glue.bf16": "yes"}, r"glue\.bf16: give true, false or auto .*not 'yes'"),
        ({"search.temperature": {"low": 0.0, "high": 2.0}}, r"temperature: 0\.0 is out of range"),
        ({"search.alpha_ce": {"low": 3.0, "high": 1.0}}, r"search\.alpha_ce.*low \(3\.0\) must be <= high"),
        ({"search.alpha_ce": 0.0, "search.alpha_mlm": 0.0, "search.alpha_cos": 0.0, "search.points_to_evaluate": []},
         r"can all only be 0: nothing to learn"),
        ({"search.alpha_ce": {"choices": [0.0]}, "search.alpha_mlm": 0.0, "search.alpha_cos": {"low": 0.0, "high": 0.0},
          "search.points_to_evaluate": []}, r"can all only be 0"),
        ({"distill.token_budget": 100000}, r"distill: give either steps or token_budget"),
        ({"search.layer_selection": "middle", "search.points_to_evaluate": []}, r"unknown layer selection 'middle'"),
        ({"search.layer_selection": [0, 1], "search.points_to_evaluate": []},
         r"list \[0, 1\] has 2 layers but student\.n_layers is 3"),
        ({"search.layer_selection": [0, 0, 1], "search.points_to_evaluate": []}, r"distinct non-negative"),
        ({"glue.tasks": ["sst2", "squad"]}, r"unknown GLUE task\(s\) \['squad'\]"),
        ({"glue.overrides": {"squad": {"lr": 1e-5}}},
         r"spec\.yaml: glue\.overrides: overrides for unknown task\(s\) \['squad'\]"),
        ({"glue.seeds_on": "large"}, r"glue\.seeds_on: Input should be 'small' or 'all'"),
        ({"glue.data": "./no/such/dir"}, r"glue\.data: path './no/such/dir' does not exist"),
        ({"search.points_to_evaluate": [{"alpha": 1.0}]}, r"points_to_evaluate\[0\] names \['alpha'\]"),
        ({"task_distill.tasks": ["squad"]},
         r"spec\.yaml: task_distill\.tasks: \['squad'\] not in glue\.tasks or tasks"),
        ({"task_distill.tasks": ["sst2"], "task_distill.layer_selection": "random_init"},
         r"task_distill\.layer_selection: .*no teacher layers"),
        ({"task_distill.tasks": ["sst2"], "task_distill.alpha_ce": 1.5},
         r"task_distill\.alpha_ce: .*less than or equal to 1"),
        ({"task_distill.tasks": ["cola"], "glue.tasks": ["sst2"]},
         r"task_distill\.tasks: \['cola'\] not in glue\.tasks"),
        ({"search.points_to_evaluate": [{"alpha_ce": 5.0}]},
         r"points_to_evaluate\[0\] lacks \['alpha_cos', 'alpha_mlm', 'layer_selection', 'temperature'\]"),
        ({"search.points_to_evaluate": [{"alpha_ce": 9.0, "alpha_mlm": 2.0, "alpha_cos": 1.0, "temperature": 2.0,
                                         "layer_selection": "every_other"}]},
                                          r"points_to_evaluate\[0\]\.alpha_ce: 9\.0 is outside"),
        ({"search.points_to_evaluate": [{"alpha_ce": 5.0, "alpha_mlm": 2.0, "alpha_cos": 1.0, "temperature": 2.0,
                                         "layer_selection": "uniform"}]},
                                          r"points_to_evaluate\[0\]\.layer_selection: 'uniform' is outside"),
        ({"search.alpha_ce": float("nan")}, r"search\.alpha_ce: .*finite"),
        ({"search.temperature": float("inf")}, r"search\.temperature: .*finite"),
        ({"search.alpha_ce": {"choices": [0.0, 1.0]}, "search.alpha_mlm": {"choices": [0.0, 2.0]},
          "search.alpha_cos": 0.0, "search.points_to_evaluate": []}, r"can all be 0 in one draw"),
        ({"search.objectives": ["accuracy"]}, r"objectives: the first must be a score to maximise"),
        ({"search.objectives": ["macro_score", "latency_ms_b32"], "search.early_stopping": {"rungs": 2}},
         r"early_stopping with two objectives is not supported"),
        ({"search.early_stopping": {"proxy": {"tasks": ["squad"]}}},
         r"search\.early_stopping\.proxy\.tasks: unknown task\(s\) \['squad'\]"),
        ({"student.n_layers": {"choices": [2, 3]}, "search.layer_selection": [0, 2, 4],
          "search.points_to_evaluate": []},
         r"a searched depth needs rule names"),
        ({"glue.data": "shared/data/glue"}, r"glue\.data: path 'shared/data/glue' does not exist"),
        ({"glue.tasks": []}, r"spec\.yaml: glue\.tasks: no GLUE task and no tasks: nothing to fine-tune on"),
        ({"search.objectives": ["perplexity"]},
         r"search\.objectives: the first must be a score to maximise: perplexity needs an lm_eval section; use one of"),
        ({"lm_eval.data": "./no/wikitext"}, r"lm_eval\.data: path './no/wikitext' does not exist"),
        ({"lm_eval.window": 64, "lm_eval.stride": 64}, r"lm_eval: stride 64 must be below window 64"),
        ({"tasks": [{"name": "x", "data": "./no/such/dir"}]},
         r"spec\.yaml: tasks\.x\.data: path './no/such/dir' does not exist"),
    ],
)
def test_bad_specs_give_one_line_errors_naming_the_field(tmp_path, changes, message):
    with pytest.raises(SpecError, match=message) as e:
        load_spec(_write(tmp_path, **changes))
    assert "\n" not in str(e.value)


def test_precision_is_auto_unless_given_and_reaches_every_fine_tuning_run(tmp_path):
    spec = load_spec(_write(tmp_path))
    assert spec.distill.bf16 == "auto" and spec.glue.settings("sst2").bf16 == "auto"
    spec = load_spec(_write(tmp_path, **{"distill.bf16": True, "glue.bf16": False,
                                         "glue.overrides": {"stsb": {"lr": 1e-5}}}))
    assert spec.distill.bf16 is True
    assert spec.glue.settings("sst2").bf16 is False and spec.glue.settings("stsb").bf16 is False


def test_small_tasks_run_every_seed_and_large_tasks_the_first(tmp_path):
    spec = load_spec(_write(tmp_path, **{"glue.seeds": [3, 1, 2]}))
    assert spec.glue.seeds_on == "small"
    assert {t: spec.glue.seeds_for(t) for t in ("cola", "mrpc", "stsb", "rte", "wnli")} == dict.fromkeys(
        ("cola", "mrpc", "stsb", "rte", "wnli"), [3, 1, 2])
    assert {t: spec.glue.seeds_for(t) for t in ("sst2", "qqp", "mnli", "qnli")} == dict.fromkeys(
        ("sst2", "qqp", "mnli", "qnli"), [3])
    everywhere = load_spec(_write(tmp_path, **{"glue.seeds": [3, 1, 2], "glue.seeds_on": "all"}))
    assert everywhere.glue.seeds_for("mnli") == [3, 1, 2]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"search.confirm": {"distill_seeds": [1]}},
         r"spec\.yaml: search\.confirm\.distill_seeds: \[1\] has 1 seed\(s\); give at least 2 distinct ones, "
         r"e\.g\. \[1, 2\]$"),
        ({"search.confirm": {"distill_seeds": [1, 1]}}, r"search\.confirm\.distill_seeds: \[1, 1\] repeats a seed; "
         "give distinct seeds"),
        ({"search.confirm": {"distill_seeds": [0, 1]}}, r"search\.confirm\.distill_seeds: 0 is the sweep's seed: the "
         r"search's own run was selected, so it is not reused; use other seeds, e\.g\. \[1, 2\]"),
        ({"seed": 3, "search.confirm": {"distill_seeds": [2, 3]}},
         r"distill_seeds: 3 is the sweep's seed: .*e\.g\. \[4, 5\]"),
        ({"search.confirm": {"seeds": [0, 1]}},
         r"search\.confirm\.seeds: \[0, 1\] has 2 seed\(s\); give at least 3 distinct ones, e\.g\. \[0, 1, 2\]$"),
        ({"search.confirm": {"seeds": [0, 1, 0]}}, r"search\.confirm\.seeds: \[0, 1, 0\] repeats a seed"),
        ({"search.confirm": {"top_k": 0}}, r"search\.confirm\.top_k: Input should be greater than or equal to 1"),
        ({"search.confirm": {"top_k": 5}}, r"search: confirm\.top_k: 5 finalists of 4 candidates; use a top_k of at "
         r"most num_candidates \(4\)"),
        ({"search.confirm": {}, "search.points_to_evaluate": []}, r"search: confirm: the confirmation compares the "
         r"finalists with the paper defaults, search\.points_to_evaluate\[0\], and there is none; add that point"),
        ({"search.confirm": {"top_k": 1, "seed": 3}}, r"search\.confirm\.seed: unknown key"),
    ],
)
def test_bad_confirmation_settings_give_one_line_errors_naming_the_field(tmp_path, changes, message):
    with pytest.raises(SpecError, match=message) as e:
        load_spec(_write(tmp_path, **changes))
    assert "\n" not in str(e.value)


def test_confirmation_is_off_unless_given_and_runs_two_seeds_or_more_on_every_task(tmp_path):
    assert load_spec(_write(tmp_path)).search.confirm is None
    confirm = load_spec(_write(tmp_path, **{"search.confirm": {}})).search.confirm
    assert (confirm.top_k, confirm.distill_seeds, confirm.seeds) == (1, [1, 2], [0, 1, 2])
    confirm = load_spec(_write(tmp_path, **{"search.confirm": {"top_k": 2, "seeds": [5, 6, 7, 8]}})).search.confirm
    assert {t: confirm.seeds_for(t) for t in ("cola", "mrpc", "stsb", "rte", "wnli")} == dict.fromkeys(
        ("cola", "mrpc", "stsb", "rte", "wnli"), [5, 6, 7, 8])
    assert {t: confirm.seeds_for(t) for t in ("sst2", "qqp", "mnli", "qnli")} == dict.fromkeys(
        ("sst2", "qqp", "mnli", "qnli"), [5, 6])
    assert confirm.seeds_for("mnli", seeds_on="all") == [5, 6, 7, 8]  # the sweep ran every seed everywhere
    from distil.config.tasks import Task
    own = Task(name="news", data="x", text_fields=("text",), num_labels=4)
    assert confirm.seeds_for(own) == [5, 6] and confirm.seeds_for(replace(own, small=True)) == [5, 6, 7, 8]


def test_layer_keys_round_trip():
    assert parse_layer_key(layer_key([0, 2, 5])) == [0, 2, 5]
    assert parse_layer_key(layer_key("distilbert")) == "distilbert"


def test_local_paths_become_absolute(tmp_path):
    spec = load_spec(ROOT / "sweeps" / "smoke.yaml")
    assert Path(spec.glue.data).is_absolute() and Path(spec.corpus.path).is_absolute()
    assert load_spec(ROOT / "sweeps" / "distilbert-base.yaml").glue.data == "nyu-mll/glue"  # hub id kept


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "run_sweep.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def _main(*args, monkeypatch, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of run_sweep.main(args) in this process, run from ROOT: the same
    code from argv to exit code as the process in `_cli` (one case below runs that), without its
    ~8 s of imports per call."""
    import run_sweep

    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    capsys.readouterr()
    rc = run_sweep.main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_rejects_bad_spec_with_exit_2_and_one_line(tmp_path):
    r = _cli(str(_write(tmp_path, **{"distill.lr": -1})), "--output", str(tmp_path / "out"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "distill.lr" in r.stderr
    assert not (tmp_path / "out").exists()


def test_cli_explicit_layer_list_out_of_teacher_range(tmp_path, monkeypatch, capsys):
    spec = _write(tmp_path, **{"search.layer_selection": [0, 3, 6], "search.points_to_evaluate": []})
    rc, _, err = _main(str(spec), "--dry-run", "--output", str(tmp_path / "o"), monkeypatch=monkeypatch, capsys=capsys)
    assert rc == 2 and "[0, 5]" in err


def test_cli_never_touches_existing_results(tmp_path, monkeypatch, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / "leaderboard.csv").write_text("precious")
    rc, _, err = _main("sweeps/smoke.yaml", "--output", str(out), monkeypatch=monkeypatch, capsys=capsys)
    assert rc == 2 and "already holds results" in err
    assert (out / "leaderboard.csv").read_text() == "precious"


def test_dry_run_validates_the_paper_scale_spec_without_network(tmp_path, monkeypatch, capsys):
    rc, out, err = _main("sweeps/distilbert-base.yaml", "--dry-run", "--output", str(tmp_path / "o"),
                         monkeypatch=monkeypatch, capsys=capsys)
    assert rc == 0, err
    assert "spec OK: distilbert-base" in out and not (tmp_path / "o").exists()


def test_yaml_merge_keys_may_be_overridden_but_a_key_given_twice_is_refused(tmp_path):
    merged = tmp_path / "merged.yaml"
    merged.write_text("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n")
    assert read_yaml(merged) == {"base": {"x": 1, "y": 2}, "other": {"x": 3, "y": 2}}
    twice = tmp_path / "twice.yaml"
    twice.write_text("glue:\n  lr: 1.0e-4\n  epochs: 1\n  lr: 2.0e-4\n")
    with pytest.raises(SpecError, match=r"twice\.yaml: key 'lr' is given twice, at line 2 and line 4; keep one"):
        read_yaml(twice)


# ---------------------------------------------------------------- student width and the layer-wise loss terms
@pytest.mark.parametrize(
    "changes, message",
    [
        ({"student.hidden_size": {"choices": [192, 384]}},
         r"^[^ ]*spec\.yaml: student\.hidden_size: the width is searched, and early stopping would rank students of "
         r"different widths on one proxy .*; fix the width to one value, or drop search\.early_stopping$"),
        ({"student.hidden_size": {"choices": [192, 256]}, "student.num_attention_heads": {"choices": [12, 4]}},
         r"student\.num_attention_heads: hidden_size 256 does not split into 12 heads \(every head count must divide "
         r"every hidden_size choice\)"),
        ({"student.intermediate_size": {"choices": [768, 0]}}, r"student\.intermediate_size: choices \[768, 0\] must "
         r"be sizes \(integers >= 1\)"),
        ({"student.hidden_size": {"choices": [192, 384]}, "search.early_stopping": None},
         r"search\.points_to_evaluate\[0\] lacks \['hidden_size'\]; give every searched parameter"),
        ({"student.hidden_size": 200, "student.num_attention_heads": 12},
         r"student\.num_attention_heads: hidden_size 200 does not split into 12 heads"),
        ({"search.layer_map": "random_init"}, r"search: layer_map: random_init names no teacher layers"),
        ({"search.layer_map": "middle"}, r"search: layer_map: unknown layer selection 'middle'"),
        ({"search.layer_map": [0, 1]}, r"search\.layer_map: list \[0, 1\] has 2 layers but student\.n_layers is 3"),
        ({"search.relation_layer": {"choices": [1, "last"]}}, r"relation_layer: choices \[1, 'last'\] must be"),
        ({"search.relation_heads": 0}, r"search\.relation_heads: Input should be greater than or equal to 1"),
        ({"search.alpha_hidden": -1.0}, r"alpha_hidden: -1\.0 is out of range"),
    ],
)
def test_bad_widths_and_layer_terms_give_one_line_errors(tmp_path, changes, message):
    with pytest.raises(SpecError, match=message) as e:
        load_spec(_write(tmp_path, **changes))
    assert "\n" not in str(e.value)


MINILM = {"hidden_size": 384, "num_attention_heads": 12, "intermediate_size": 1536, "num_hidden_layers": 6}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"student.hidden_size": 192, "student.num_attention_heads": 4, "search.alpha_attn": 1.0},
         r"^student\.num_attention_heads: 4 heads, the teacher has 12, and search\.alpha_attn .*use 12 heads or set "
         r"alpha_attn to 0"),
        ({"student.hidden_size": 256, "student.num_attention_heads": 4,
          "search.alpha_relation": {"low": 0.0, "high": 1.0}},
         r"^search\.relation_heads: 48 does not divide both hidden sizes \(student 256, teacher 384\); use a common "
         r"divisor, e\.g\. 32$"),
        ({"student.hidden_size": 768}, r"^student\.hidden_size: 768 is more than the teacher's 384.* random_init$"),
        ({"student.intermediate_size": 2048}, r"^student\.intermediate_size: 2048 is more than the teacher's 1536"),
        ({"student.hidden_size": 200}, r"^student\.hidden_size: 200 does not split into 12 attention heads"),
    ],
)
def test_widths_that_cannot_work_with_the_teacher_are_refused(tmp_path, changes, message):
    from distil.config import rules

    spec = load_spec(_write(tmp_path, **{"search.points_to_evaluate": [], **changes}))
    with pytest.raises(SpecError, match=message):
        rules.student_shape(spec, MINILM)


def test_a_narrower_student_fits_the_teacher_and_the_terms_that_allow_it(tmp_path):
    from distil.config import rules
    from distil.config.settings import StudentShape

    spec = load_spec(_write(tmp_path, **{"student.hidden_size": 192, "search.alpha_attn": 1.0,
                                         "search.alpha_relation": 1.0, "search.alpha_hidden": 1.0}))
    assert rules.student_shape(spec, MINILM) == StudentShape(192, 12, 1536)  # unset: the teacher's
    # A different head count is fine without alpha_attn (relations cross head counts), wider with random_init.
    spec = load_spec(_write(tmp_path, **{"student.hidden_size": 256, "student.num_attention_heads": 4,
                                         "search.alpha_relation": 1.0, "search.relation_heads": 32}))
    assert rules.student_shape(spec, MINILM) == StudentShape(256, 4, 1536)
    spec = load_spec(_write(tmp_path, **{"student.hidden_size": 768, "search.layer_selection": "random_init",
                                         "search.points_to_evaluate": []}))
    assert rules.student_shape(spec, MINILM).hidden_size == 768


def test_a_searched_width_is_searched_and_checked_shape_by_shape(tmp_path):
    from distil.config import rules
    from distil.config.settings import StudentShape

    point = {"alpha_ce": 5.0, "alpha_mlm": 2.0, "alpha_cos": 1.0, "temperature": 2.0, "layer_selection": "every_other",
             "hidden_size": 192, "num_attention_heads": 12}
    width = {"student.hidden_size": {"choices": [192, 384]}, "student.num_attention_heads": {"choices": [12, 4]},
             "search.early_stopping": None, "search.points_to_evaluate": [point]}
    spec = load_spec(_write(tmp_path, **width))
    assert spec.space()["hidden_size"].choices == [192, 384] and "num_attention_heads" in spec.space()
    assert spec.student.shape() == StudentShape() and len(spec.student.shapes()) == 4  # every combination
    assert rules.student_shapes(spec, MINILM) == [StudentShape(192, 12, 1536), StudentShape(192, 4, 1536),
                                                  StudentShape(384, 12, 1536), StudentShape(384, 4, 1536)]
    # The sweep builds, names and profiles each shape: none at the teacher's own width (names as before).
    from distil.search.context import SweepContext, student_arch

    ctx = SweepContext(spec=spec, out=str(tmp_path), job=None, n_layers=3, profiles={}, provenance={},
                       teacher_shape=StudentShape(384, 12, 1536))
    assert ctx.shapes == [StudentShape(192, 12, 1536), StudentShape(192, 4, 1536), StudentShape(),
                          StudentShape(384, 4, 1536)]
    assert [ctx.key(3, s) for s in ctx.shapes] == ["3L192H12F1536", "3L192H4F1536", "", "3L384H4F1536"]
    assert [student_arch(3, s) for s in ctx.shapes[1:3]] == ["student-3L192H4F1536", "student-3L"]
    drawn = {**point, "hidden_size": 384, "num_attention_heads": 12}
    assert ctx.params(drawn).shape == StudentShape() and "hidden_size" not in ctx.params(drawn).to_json()
    assert ctx.params(point).to_json()["hidden_size"] == 192 and ctx.params(point).shape.intermediate_size == 1536
    # alpha_attn needs the teacher's head count in every shape a candidate can draw.
    spec = load_spec(_write(tmp_path, **{**width, "search.alpha_attn": 1.0}))
    with pytest.raises(SpecError, match=r"^student\.num_attention_heads: 4 heads, the teacher has 12, and "
                                        r"search\.alpha_attn compares attention scores head by head"):
        rules.student_shapes(spec, MINILM)


def test_the_narrow_spec_validates_offline_with_one_point_per_loss_family(tmp_path, monkeypatch, capsys):
    """sweeps/narrow.yaml: --dry-run validates it offline; a 4 x 288 student with the teacher's 12 heads (so
    every term applies), the paper defaults then one fixed point per loss family before the sampler's trials."""
    from distil.config import rules
    from distil.config.settings import StudentShape
    out = dry_run_shipped("narrow", tmp_path, monkeypatch, capsys)
    assert "hidden_size 288, num_attention_heads 12, intermediate_size 1152" in out
    spec = load_spec(ROOT / "sweeps" / "narrow.yaml")
    teacher = rules.teacher_config(rules.resolve_teacher(spec.teacher.model))
    assert rules.student_shapes(spec, teacher) == [StudentShape(288, 12, 1152)] and spec.student.n_layers == 4
    terms = ("alpha_ce", "alpha_mlm", "alpha_cos", "alpha_hidden", "alpha_attn", "alpha_relation")
    positive = [[t for t in terms if point[t] > 0] for point in spec.search.points_to_evaluate]
    assert positive == [["alpha_ce", "alpha_mlm", "alpha_cos"], ["alpha_ce", "alpha_mlm"], ["alpha_hidden"],
                        ["alpha_relation"]]
    assert spec.search.num_candidates > len(spec.search.points_to_evaluate) - 1  # besides the fixed points
    assert all(spec.search.can_be_positive(t) for t in terms) and spec.search.early_stopping is None


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"search.layer_map": [0, 1, 9]}, r"^search\.layer_map: .*need 3 distinct teacher layer indices in \[0, 5\]"),
        ({"search.relation_layer": 6}, r"^search\.relation_layer: 6 is not a layer of the 6-layer teacher"),
        ({"search.relation_layer": {"choices": [-1, -7]}, "search.points_to_evaluate": []},
         r"^search\.relation_layer: -7 is not a layer"),
    ],
)
def test_layer_map_and_relation_layer_must_be_teacher_layers(tmp_path, changes, message):
    from distil.config import rules

    spec = load_spec(_write(tmp_path, **changes))
    with pytest.raises(SpecError, match=message):
        rules.student_depth(spec, 6)


def test_preflight_takes_a_narrower_student_and_checks_it_against_the_teacher(tmp_path, teacher_source):
    from distil import preflight
    from distil.config import rules
    from distil.config.settings import StudentShape

    preflight.check_student(load_spec(_write(tmp_path, **{"student.hidden_size": 192})), teacher_source)
    preflight.check_student(load_spec(_write(tmp_path, **{"student.hidden_size": 384})), teacher_source)  # its own
    preflight.check_student(load_spec(_write(tmp_path)), None)  # a hub teacher: checked when the run starts
    with pytest.raises(SpecError, match=r"^student\.hidden_size: 768 is more than the teacher's 384"):
        preflight.check_student(load_spec(_write(tmp_path, **{"student.hidden_size": 768})), teacher_source)
    # The width a sweep builds and names: none at the teacher's own (row names and profiles as before), else all set.
    teacher = StudentShape(384, 12, 1536)
    assert rules.sweep_shape(StudentShape(hidden_size=384), teacher) == StudentShape()
    assert rules.sweep_shape(StudentShape(hidden_size=192), teacher) == StudentShape(192, 12, 1536)
    assert rules.sweep_shape(StudentShape(hidden_size=192), StudentShape()) == StudentShape(hidden_size=192)


def test_only_a_bert_teachers_student_is_built_narrower(tmp_path):
    from distil.config import rules

    roberta = {**MINILM, "model_type": "roberta"}
    spec = load_spec(_write(tmp_path, **{"student.hidden_size": 192}))
    with pytest.raises(SpecError, match=r"^student\.hidden_size: 192 is not the roberta teacher's, and only a BERT "):
        rules.student_shape(spec, roberta)
    rules.student_shape(load_spec(_write(tmp_path, **{"student.hidden_size": 384})), roberta)  # its own width


def test_fixed_values_carry_the_layer_terms_settings_to_every_candidate(tmp_path):
    spec = load_spec(_write(tmp_path, **{"search.alpha_hidden": 1.5, "search.layer_map": [0, 2, 5],
                                         "search.relation_layer": {"choices": [3, 5]},
                                         "search.points_to_evaluate": []}))
    fixed = spec.search.fixed()
    assert fixed["alpha_hidden"] == 1.5 and fixed["layer_map"] == "0,2,5" and fixed["relation_heads"] == 48
    assert "relation_layer" not in fixed and spec.space()["relation_layer"].choices == [3, 5]


def test_glue_tasks_take_a_share_of_a_gpu_only_with_use_gpu():
    from distil.config.spec import GlueSpec
    from distil.search.finetune_runs import task_options

    assert task_options(GlueSpec())["num_gpus"] == 0
    assert task_options(GlueSpec(use_gpu=True))["num_gpus"] == 1.0  # a whole GPU unless told
    assert task_options(GlueSpec(use_gpu=True, gpus_per_task=0.25))["num_gpus"] == 0.25
    assert task_options(GlueSpec(gpus_per_task=0.25))["num_gpus"] == 0  # no GPU without use_gpu
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="gpus_per_task"):
            GlueSpec(gpus_per_task=bad)
