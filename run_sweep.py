#!/usr/bin/env python
"""distil-sweep from a checkout: `python run_sweep.py [run|resume|report] ...` is `distil-sweep ...`
(distil/cli.py); with no argument it runs sweeps/smoke.yaml into results/smoke/.

    python run_sweep.py                                   # run sweeps/smoke.yaml -> results/smoke/
    python run_sweep.py run sweeps/cpu.yaml --dry-run     # validate a spec, run nothing
    python run_sweep.py --help                            # the sub-commands and their options
"""

from __future__ import annotations

import sys

from distil import cli


def main(argv: list[str] | None = None) -> int:
    """distil.cli.main under this file's name (usage errors and the resume line say `python run_sweep.py`)."""
    return cli.main(argv, prog="run_sweep.py")


if __name__ == "__main__":
    sys.exit(main())
