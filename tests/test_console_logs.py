"""Ray's driver chatter goes to a log file under the results dir, its errors still reach the console."""

import logging

import pytest

from distil.store.logs import ray_driver_log


@pytest.fixture
def ray_logger():
    """The "ray" logger with its handlers and their levels restored after the test."""
    import ray  # noqa: F401  (installs Ray's stderr handler on the "ray" logger)

    logger = logging.getLogger("ray")
    saved = [(h, h.level) for h in logger.handlers]
    yield logger
    for h in logger.handlers[:]:
        if all(h is not s for s, _ in saved):
            logger.removeHandler(h)
            h.close()
    for h, level in saved:
        h.setLevel(level)


def test_ray_warnings_go_to_the_log_file_and_errors_to_the_console(ray_logger, tmp_path):
    console = [h for h in ray_logger.handlers if isinstance(h, logging.StreamHandler)
               and not isinstance(h, logging.FileHandler)]
    assert console  # Ray's own stderr handler
    ray_driver_log(tmp_path / "logs")
    # The console handlers pass errors only (the "ray" logger propagates to no one else).
    assert all(h.level == logging.ERROR for h in console) and not ray_logger.propagate
    log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    log.warning("Token authentication is enabled for this Ray cluster.")
    logging.getLogger("ray._private.worker").info("Started a local Ray instance.")
    log.error("the GCS is unreachable")
    text = (tmp_path / "logs" / "ray-driver.log").read_text()
    assert "Token authentication" in text and "Started a local Ray instance" in text and "unreachable" in text
