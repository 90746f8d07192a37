import itertools

import pytest
import torch

from distil.science.student import build_student, count_parameters, select_layers


@pytest.mark.parametrize(
    "rule, L, n, expected",
    [
        ("distilbert", 12, 6, [0, 2, 4, 7, 9, 11]),  # the paper's choice
        ("every_other", 12, 6, [0, 2, 4, 6, 8, 10]),
        ("uniform", 12, 6, [1, 3, 5, 7, 9, 11]),
        ("first", 6, 3, [0, 1, 2]),
        ("last", 6, 3, [3, 4, 5]),
        ("distilbert", 6, 3, [0, 2, 5]),
        ("every_other", 6, 3, [0, 2, 4]),
        ([5, 1, 3], 6, 3, [5, 1, 3]),
        ("random_init", 6, 3, None),
    ],
)
def test_layer_selection_rules(rule, L, n, expected):
    assert select_layers(rule, L, n) == expected


@pytest.mark.parametrize("bad", [[0, 1], [0, 0, 1], [0, 1, 6], [-1, 1, 2]])
def test_invalid_explicit_lists_are_rejected(bad):
    with pytest.raises(ValueError, match="distinct teacher layer indices"):
        select_layers(bad, 6, 3)


def test_student_deeper_than_teacher_is_rejected():
    with pytest.raises(ValueError, match="between 1 and"):
        select_layers("first", 6, 7)


def test_student_layer_i_equals_teacher_layer_sel_i(teacher):
    sel = select_layers("distilbert", 6, 3)
    student = build_student(teacher, 3, "distilbert").eval()
    x = torch.randn(2, 7, 384)
    for i, j in enumerate(sel):
        t_layer = teacher.bert.encoder.layer[j]
        s_layer = student.distilbert.transformer.layer[i]
        assert torch.equal(s_layer.ffn.lin1.weight, t_layer.intermediate.dense.weight)
        assert torch.equal(s_layer.attention.q_lin.bias, t_layer.attention.self.query.bias)
        with torch.no_grad():  # full attention (no padding) in both
            t_out = t_layer(x)
            s_out = s_layer(x)
        t_out = t_out[0] if isinstance(t_out, tuple) else t_out
        s_out = s_out[0] if isinstance(s_out, tuple) else s_out
        assert torch.allclose(t_out, s_out, atol=1e-4)


def test_full_depth_student_reproduces_teacher_logits(teacher, tokenizer):
    enc = tokenizer(["the capital of france is [MASK].", "a short one"], padding=True, return_tensors="pt")
    student = build_student(teacher, 6, list(range(6))).eval()
    with torch.no_grad():
        t = teacher(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
        s = student(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
    assert torch.allclose(t, s, atol=1e-3)


def test_student_has_no_token_types_or_pooler_and_ties_decoder(teacher):
    student = build_student(teacher, 3, "every_other")
    names = [n for n, _ in student.named_parameters()]
    assert not any("token_type" in n or "pooler" in n for n in names)
    assert student.vocab_projector.weight.data_ptr() == student.distilbert.embeddings.word_embeddings.weight.data_ptr()
    assert count_parameters(student.distilbert) < count_parameters(teacher.bert)


def test_random_init_shares_no_teacher_weights(teacher):
    torch.manual_seed(0)
    student = build_student(teacher, 3, "random_init")
    assert not torch.equal(
        student.distilbert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight
    )


# ---------------------------------------------------------------- weight selection (Xu et al. 2024)
def test_evenly_spaced_indices():
    from distil.science.student import evenly_spaced

    assert evenly_spaced(384, 192)[:4] == [0, 2, 4, 6] and evenly_spaced(384, 192)[-1] == 382
    assert evenly_spaced(1536, 512)[:3] == [0, 3, 6]
    assert evenly_spaced(6, 4) == [0, 2, 3, 5]  # not a divisor: round(i·5/3), both ends kept
    assert evenly_spaced(12, 12) == list(range(12)) and evenly_spaced(5, 1) == [0]
    with pytest.raises(ValueError, match="at most as wide"):
        evenly_spaced(4, 5)


def test_weight_selection_at_the_teachers_own_shape_is_the_teachers_selected_layers(teacher):
    from distil.config.settings import StudentShape
    from distil.science.student import select_elements

    w = teacher.bert.encoder.layer[0].attention.self.query.weight
    assert select_elements(w, w.shape) is w
    student = build_student(teacher, 3, "distilbert", StudentShape(hidden_size=384, num_attention_heads=12,
                                                                   intermediate_size=1536))
    t, s = teacher.state_dict(), student.state_dict()
    pairs = [("attention.q_lin", "attention.self.query"), ("attention.k_lin", "attention.self.key"),
             ("attention.v_lin", "attention.self.value"), ("attention.out_lin", "attention.output.dense"),
             ("sa_layer_norm", "attention.output.LayerNorm"), ("ffn.lin1", "intermediate.dense"),
             ("ffn.lin2", "output.dense"), ("output_layer_norm", "output.LayerNorm")]
    for i, j in enumerate(select_layers("distilbert", 6, 3)):
        for (dst, src), p in itertools.product(pairs, ("weight", "bias")):
            assert torch.equal(s[f"distilbert.transformer.layer.{i}.{dst}.{p}"], t[f"bert.encoder.layer.{j}.{src}.{p}"])
    assert torch.equal(s["distilbert.embeddings.word_embeddings.weight"], t["bert.embeddings.word_embeddings.weight"])
    assert torch.equal(s["distilbert.embeddings.LayerNorm.weight"], t["bert.embeddings.LayerNorm.weight"])


@pytest.fixture(scope="module")
def numbered_teacher():
    """A 2-layer BERT (hidden 6, 2 heads, FFN 8, vocabulary 10) whose every weight is a distinct number:
    tensor k holds 1000·k + 0, 1, 2, ... in order."""
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(vocab_size=10, hidden_size=6, num_hidden_layers=2, num_attention_heads=2, intermediate_size=8,
                        max_position_embeddings=5, type_vocab_size=1)
    model = BertForMaskedLM(config).eval()
    with torch.no_grad():
        for k, p in enumerate(model.parameters()):
            p.copy_(torch.arange(p.numel(), dtype=torch.float32).view(p.shape) + 1000 * k)
    return model


def test_narrow_student_takes_evenly_spaced_rows_and_columns(numbered_teacher):
    from distil.config.settings import StudentShape

    t = numbered_teacher
    s = build_student(t, 1, "last", StudentShape(hidden_size=4, num_attention_heads=2, intermediate_size=4))
    H, F = [0, 2, 3, 5], [0, 2, 4, 6]  # 6 -> 4 hidden units (round(i·5/3)), 8 -> 4 FFN units (every other)
    tl, sl = t.bert.encoder.layer[1], s.distilbert.transformer.layer[0]  # rule `last` of 2 -> 1: teacher layer 1
    assert torch.equal(sl.attention.q_lin.weight, tl.attention.self.query.weight[H][:, H])
    assert sl.attention.q_lin.weight[1, 3] == tl.attention.self.query.weight[2, 5]  # row 1 <- 2, column 3 <- 5
    assert torch.equal(sl.attention.k_lin.bias, tl.attention.self.key.bias[H])
    assert torch.equal(sl.attention.out_lin.weight, tl.attention.output.dense.weight[H][:, H])
    assert torch.equal(sl.sa_layer_norm.weight, tl.attention.output.LayerNorm.weight[H])
    assert torch.equal(sl.ffn.lin1.weight, tl.intermediate.dense.weight[F][:, H])
    assert torch.equal(sl.ffn.lin1.bias, tl.intermediate.dense.bias[F])
    assert torch.equal(sl.ffn.lin2.weight, tl.output.dense.weight[H][:, F])
    assert sl.ffn.lin2.weight[3, 2] == tl.output.dense.weight[5, 4]
    assert torch.equal(sl.output_layer_norm.bias, tl.output.LayerNorm.bias[H])
    e, te = s.distilbert.embeddings, t.bert.embeddings
    assert torch.equal(e.word_embeddings.weight, te.word_embeddings.weight[:, H])  # every token, fewer units
    assert torch.equal(e.position_embeddings.weight,
                       (te.position_embeddings.weight + te.token_type_embeddings.weight[0])[:, H])
    assert torch.equal(e.LayerNorm.weight, te.LayerNorm.weight[H])
    head = t.cls.predictions
    assert torch.equal(s.vocab_transform.weight, head.transform.dense.weight[H][:, H])
    assert torch.equal(s.vocab_layer_norm.bias, head.transform.LayerNorm.bias[H])
    assert torch.equal(s.vocab_projector.bias, head.bias)  # the whole vocabulary
    assert s.vocab_projector.weight.data_ptr() == e.word_embeddings.weight.data_ptr()


def test_shapes_a_teacher_cannot_give_are_refused_but_random_init_takes_any(numbered_teacher):
    from distil.config.settings import StudentShape

    with pytest.raises(ValueError, match=r"student\.hidden_size: 8 is more than the teacher's 6"):
        build_student(numbered_teacher, 1, "first", StudentShape(hidden_size=8, num_attention_heads=2))
    with pytest.raises(ValueError, match=r"student\.hidden_size: 4 does not split into 3 attention heads"):
        build_student(numbered_teacher, 1, "first", StudentShape(hidden_size=4, num_attention_heads=3))
    wide = build_student(numbered_teacher, 1, "random_init", StudentShape(hidden_size=8, intermediate_size=16))
    assert (wide.config.dim, wide.config.n_heads, wide.config.hidden_dim) == (8, 2, 16)


def test_the_width_benchmark_scales_the_ffn_with_the_width_and_refuses_a_width_the_heads_do_not_split():
    """benchmarks/narrow_init.py's shapes: the teacher's FFN ratio at every width, the teacher's own width
    as the same-width copy, and a one-line error for a width the heads do not divide or one wider than it."""
    from benchmarks.narrow_init import shape_at
    from distil.config.settings import StudentShape
    from distil.config.spec import SpecError
    minilm = StudentShape(384, 12, 1536)
    assert shape_at(288, 12, minilm) == StudentShape(288, 12, 1152)
    assert shape_at(192, 12, minilm) == StudentShape(192, 12, 768)
    assert shape_at(384, 12, minilm) == StudentShape()
    with pytest.raises(SpecError,
                       match=r"^--widths 250: student\.hidden_size: 250 does not split into 12 attention heads"):
        shape_at(250, 12, minilm)
    with pytest.raises(SpecError, match=r"^--widths 528: student\.hidden_size: 528 is more than the teacher's 384"):
        shape_at(528, 12, minilm)
