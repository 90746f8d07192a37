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
