"""A logger that works in and out of a Prefect run: the run's logger (shown in the UI) inside a
flow or task run, a standard ``logging`` logger in a notebook, a script or a unit test."""

from __future__ import annotations

import logging
from typing import Any

from prefect.exceptions import MissingContextError
from prefect.logging import get_logger, get_run_logger


def run_logger(name: str) -> logging.Logger | logging.LoggerAdapter[Any]:
    """The current run's logger, or the standard logger ``prefect.<name>`` outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger(name)
