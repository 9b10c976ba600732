"""``validation-alert``: the example automation's target, started by a ``flowkit.validation.failed``
event (see the trigger in ``prefect.yaml``)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact


@flow(name="validation-alert", log_prints=True)
def validation_alert(
    checkpoint: str, details: dict[str, Any] | str = "", flow_run: str = ""
) -> str:
    """Raise the alarm about a failed checkpoint: a warning in the logs and a markdown artifact.

    Replace its body (or the trigger's action) with what your team needs: a Slack message
    block, a ticket, a rollback deployment.

    Args:
        checkpoint: The checkpoint's resource id, e.g. 'flowkit.checkpoint.orders'.
        details: The event's counts (rows, valid, quarantined, errors, warnings).
        flow_run: The id of the flow run whose checkpoint failed.
    """
    message = f"Checkpoint {checkpoint} failed in flow run {flow_run or '?'}: {details}"
    get_run_logger().warning(message)
    create_markdown_artifact(
        key="validation-alert",
        markdown=f"## Validation failed\n\n{message}",
        description="Raised by the flowkit.validation.failed automation",
    )
    return message
