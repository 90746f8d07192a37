"""bf16: true | false | auto resolved per device (distil.science.precision); the flags are passed in, so
both answers of the rule are tested on any machine."""

import pytest
import torch

from distil.science.precision import bf16_support, cpu_flags, describe, enable_tf32, resolve_bf16, sweep_line

ZEN4 = frozenset({"fpu", "sse2", "avx2", "avx512f", "avx512_bf16"})
SAPPHIRE_RAPIDS = frozenset({"avx512f", "amx_tile", "amx_bf16"})
SKYLAKE = frozenset({"fpu", "sse2", "avx2", "avx512f"})


@pytest.mark.parametrize("flags, expected", [(ZEN4, True), (SAPPHIRE_RAPIDS, True), (SKYLAKE, False),
                                             (frozenset(), False)])
def test_auto_on_cpu_follows_the_bf16_flags(flags, expected):
    assert resolve_bf16("auto", "cpu", flags=flags) is expected


@pytest.mark.parametrize("cuda_bf16", [True, False])
def test_auto_on_cuda_follows_the_gpu(cuda_bf16):
    assert resolve_bf16("auto", torch.device("cuda", 0), cuda_bf16=cuda_bf16) is cuda_bf16


@pytest.mark.parametrize("setting", [True, False])
def test_an_explicit_setting_is_honoured_on_any_device(setting):
    for device, kw in [("cpu", {"flags": SKYLAKE}), ("cpu", {"flags": ZEN4}), ("cuda", {"cuda_bf16": False}),
                       ("cuda", {"cuda_bf16": True}), ("mps", {})]:
        assert resolve_bf16(setting, device, **kw) is setting


def test_auto_on_other_devices_is_fp32():
    assert resolve_bf16("auto", "mps") is False


def test_the_console_text_says_what_and_why():
    assert describe("auto", "cpu", flags=ZEN4) == (True, "bf16 (auto: cpu has avx512_bf16)")
    assert describe("auto", "cpu", flags=SAPPHIRE_RAPIDS) == (True, "bf16 (auto: cpu has amx_bf16)")
    assert describe("auto", "cpu", flags=SKYLAKE) == (False, "fp32 (auto: cpu has neither avx512_bf16 nor amx_bf16)")
    assert describe(False, "cpu", flags=ZEN4) == (False, "fp32 (bf16: false)")
    assert bf16_support("cuda", cuda_bf16=False) == (False, "the GPU has no bf16 (pre-Ampere)")


@pytest.mark.parametrize("bad", ["yes", "true", 1, None])
def test_anything_else_is_refused(bad):
    with pytest.raises(ValueError, match="true, false or auto"):
        resolve_bf16(bad, "cpu", flags=ZEN4)


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx512f avx512_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert cpu_flags(tmp_path / "arm") == frozenset()


def test_this_machine_is_decided_from_its_own_flags():
    # Whatever this CPU is, auto without injected flags gives the answer of its /proc/cpuinfo.
    assert resolve_bf16("auto", "cpu") is any(f in cpu_flags() for f in ("avx512_bf16", "amx_bf16"))


def test_tf32_is_left_alone_off_cuda():
    before = torch.get_float32_matmul_precision()
    enable_tf32("cpu")
    assert torch.get_float32_matmul_precision() == before


def test_the_sweep_line_names_both_stages_once():
    auto = describe("auto", "cpu")[1]
    assert sweep_line("auto", False, "auto", False) == f"precision: {auto} for distillation and fine-tuning"
    assert sweep_line(False, False, "auto", False) == f"precision: distillation fp32 (bf16: false), fine-tuning {auto}"
    if not torch.cuda.is_available():  # a CPU driver of a GPU cluster leaves the choice to the workers
        assert "decided on each worker" in sweep_line("auto", True, "auto", False)


@pytest.mark.parametrize("setting", [True, False])
def test_fine_tuning_runs_in_the_precision_it_records(setting, teacher, tokenizer, tmp_path):
    # A real (tiny) run whose Trainer reports the autocast state and logits dtype of its training steps.
    from transformers import Trainer

    from distil.config.glue import glue_task
    from distil.config.settings import FinetuneSettings
    from distil.evaluation.finetune import finetune_and_evaluate
    from distil.science.student import build_student
    from tests.conftest import GLUE

    seen = set()

    class Spy(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # Accelerate autocasts inside the model's forward and returns fp32 outputs: look at a
            # layer's output inside it (the classifier's linear layer).
            linear = model.classifier if hasattr(model, "classifier") else model.module.classifier
            hook = linear.register_forward_hook(lambda m, i, o: seen.add((torch.is_autocast_enabled("cpu"), o.dtype)))
            try:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            finally:
                hook.remove()

    build_student(teacher, 1, "first").save_pretrained(tmp_path / "student")
    tokenizer.save_pretrained(tmp_path / "student")
    settings = FinetuneSettings(lr=1e-4, epochs=1, batch_size=8, max_seq_len=32, max_train_examples=16,
                                max_eval_examples=8, selection_examples=8, bf16=setting)
    result = finetune_and_evaluate(str(tmp_path / "student"), glue_task(str(GLUE), "sst2"), settings, 0, None,
                                   trainer_cls=Spy)
    assert result["bf16"] is setting
    assert seen == {(setting, torch.bfloat16 if setting else torch.float32)}
