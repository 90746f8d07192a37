"""The distillation science, pure torch (no Ray): student, teacher, losses, masking, the step loop."""
