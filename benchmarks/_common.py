"""What the benchmarks share: the Prefect server they run against.

Scripts run as ``python benchmarks/<name>.py``, so this folder is on ``sys.path``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def prefect_backend() -> Iterator[str]:
    """The server in ``PREFECT_API_URL`` when set, otherwise a temporary one (loopback)."""
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield f"{PREFECT_API_URL.value()} (temporary, prefect_test_harness)"
