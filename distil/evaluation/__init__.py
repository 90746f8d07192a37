"""Scoring a model: fine-tuning on a task, metrics, latency profiles, bootstrap intervals."""
