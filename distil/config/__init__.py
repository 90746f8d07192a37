"""The spec and everything validated at the edge: sweep YAML, tasks as data, layer rules."""
