"""What a person reads on the console, and where the libraries' chatter goes instead.

The console of a sweep shows Tune's status table and one line per event that matters (see
distil.search.tuner.EventLog). Everything else the workers print (transformers' weight-loading
reports, datasets' progress bars, Trainer logs, Ray Train's own messages) is appended to
`<results>/logs/workers.log`: every Ray process of the sweep points its stdout and stderr there
(`to_log_file`). `run_sweep.py --verbose` leaves everything on the console instead.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

_redirected_to: str | None = None  # per process: Ray reuses worker processes across tasks


def no_progress_bars() -> None:
    """No tqdm bars from transformers ("Loading weights") and datasets ("Map"): in a log file they
    are walls of carriage returns."""
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def quiet_libraries() -> None:
    """On the driver's console: drop the libraries' info-level chatter and bars (errors stay)."""
    import datasets
    import transformers

    no_progress_bars()
    transformers.utils.logging.set_verbosity_error()  # "LOAD REPORT" tables, "newly initialized" notes
    datasets.utils.logging.set_verbosity_error()
    logging.getLogger("optuna").setLevel(logging.WARNING)
    # "unresolved search space": by design
    logging.getLogger("ray.tune.search.optuna.optuna_search").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=Warning, module="optuna")  # ExperimentalWarning for TPE's `group`
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray")


def ray_driver_log(log_dir: str | Path) -> None:
    """Ray's own driver messages ("Started a local Ray instance", the token-authentication notice) go to
    `log_dir/ray-driver.log` instead of the console; its errors still reach the console. Call it before
    ray.init (which sets the "ray" logger's level, not its handlers)."""
    ray_logger = logging.getLogger("ray")
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    for handler in ray_logger.handlers:
        handler.setLevel(logging.ERROR)
    to_file = logging.FileHandler(Path(log_dir) / "ray-driver.log")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s -- %(message)s"))
    ray_logger.addHandler(to_file)


def to_log_file(log_dir: str | Path, verbose: bool = False) -> None:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so C extensions and child
    processes follow) to `log_dir/workers.log`, appending. Idempotent per process; a no-op with
    `verbose`. Call it first thing in every function Ray runs for the sweep."""
    global _redirected_to
    if verbose or _redirected_to == str(log_dir):
        return
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(log_dir) / "workers.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush(), sys.stderr.flush()
    os.dup2(fd, 1), os.dup2(fd, 2)
    os.close(fd)
    _redirected_to = str(log_dir)
    no_progress_bars()
