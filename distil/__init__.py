"""distil-sweep: DistilBERT-style distillation sweeps on Ray Tune + Optuna, ranked on GLUE.

Sub-packages follow the pipeline, each importing only those before it:
config (spec, tasks, rules) -> store (results layout, storage, logs) -> science (pure torch:
student, teacher, losses, masking, distillation) -> evaluation (fine-tuning, metrics, bootstrap)
-> search (Ray Train and Tune: trials, reference rows) -> report (leaderboard, html, export) -> cli.
"""
