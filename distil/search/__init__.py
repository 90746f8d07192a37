"""Ray at the edge: Train workers distil, Tune + Optuna search, trials and reference rows."""
