"""Tokens and cost summed over a deployment's recent runs: one markdown artifact per deployment.

Each run's ``flowkit-llm-usage`` table is the record (on the Prefect server, so every worker's
runs count); after a run in a deployment publishes its table, this reads the tables of the
deployment's last runs and publishes ``flowkit-llm-usage-<flow>-<deployment>``.
"""

from __future__ import annotations

from typing import Any

from flowkit_prefect._artifacts import key_slug, table_rows

RECENT_RUNS = 20


def deployment_usage_key(flow_name: str, deployment_name: str) -> str:
    """``flowkit-llm-usage-<flow>-<deployment>`` (lowercase letters, digits and dashes)."""
    return f"flowkit-llm-usage-{key_slug(f'{flow_name}-{deployment_name}', 'deployment')}"


def _run_totals(data: Any) -> tuple[int, int, float]:
    """Calls, tokens and cost of one run's usage table."""
    rows = table_rows(data)
    calls = sum(int(row.get("calls", 0)) for row in rows)
    tokens = sum(int(row.get("input_tokens", 0)) + int(row.get("output_tokens", 0)) for row in rows)
    return calls, tokens, sum(float(row.get("cost", 0.0)) for row in rows)


def publish_deployment_usage(usage_key: str, runs: int = RECENT_RUNS) -> str | None:
    """Publish the deployment's usage summary when this flow run belongs to a deployment;
    returns the artifact key (``None`` outside a deployment)."""
    from prefect import get_client
    from prefect.artifacts import create_markdown_artifact
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterId,
    )
    from prefect.client.schemas.sorting import ArtifactSort
    from prefect.runtime import deployment, flow_run

    deployment_id = deployment.id
    if not deployment_id:
        return None
    key = deployment_usage_key(flow_run.flow_name, deployment.name)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[usage_key])),
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])
            ),
            sort=ArtifactSort.CREATED_DESC,
            limit=runs,
        )
        run_ids = [a.flow_run_id for a in artifacts if a.flow_run_id]
        names = (
            {
                run.id: run.name
                for run in client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids))
                )
            }
            if run_ids
            else {}
        )
    lines = [
        f"### Model usage of `{flow_run.flow_name}/{deployment.name}`: last {len(artifacts)} runs",
        "",
        "| run | when | calls | tokens | cost |",
        "|---|---|---:|---:|---:|",
    ]
    total_calls = total_tokens = 0
    total_cost = 0.0
    for artifact in artifacts:
        try:
            calls, tokens, cost = _run_totals(artifact.data)
        except (TypeError, ValueError, AttributeError):
            continue  # not a usage table
        total_calls, total_tokens, total_cost = (
            total_calls + calls,
            total_tokens + tokens,
            total_cost + cost,
        )
        when = artifact.created.strftime("%Y-%m-%d %H:%M") if artifact.created else ""
        name = names.get(artifact.flow_run_id, str(artifact.flow_run_id)[:8])  # type: ignore[arg-type]
        lines.append(f"| {name} | {when} | {calls} | {tokens} | {cost:.4f} |")
    lines.append(f"| **total** | | **{total_calls}** | **{total_tokens}** | **{total_cost:.4f}** |")
    create_markdown_artifact(
        "\n".join(lines),
        key=key,
        description=(
            f"{flow_run.flow_name}/{deployment.name}: {total_tokens} tokens, cost "
            f"{total_cost:.4f} over the last {len(artifacts)} runs"
        ),
        _sync=True,  # pyright: ignore[reportCallIssue]  # async_dispatch: also in async flows
    )
    return key
