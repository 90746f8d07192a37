"""Where results live: the results-dir layout, remote storage mirroring, logs, provenance."""
