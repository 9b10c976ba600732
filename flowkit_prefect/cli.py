"""``flowkit``: the commands behind ``make run`` / ``make stop``.

flowkit up [--no-server]        `prefect server start --background` under .flowkit/, until healthy
  [--database sqlite|postgres]  postgres: a cluster under .flowkit/postgres/ (FLOWKIT_DATABASE)
flowkit blocks save [DIR]       save the block documents in DIR (default: blocks/)
flowkit worker NAME             start a process worker for the pool, in the background
flowkit show-answer             print the latest rag-answer artifact and where to see it
flowkit docker-up [--no-server]  up, then the Docker work pool: our dockerd, images, worker
flowkit docker-down             stop the Docker worker and our dockerd (by PID)
flowkit down                    stop that worker, then `prefect server stop`

The work pool is Prefect's: ``prefect work-pool create NAME --type process`` when
``prefect work-pool inspect NAME`` finds none (an existing pool keeps its settings).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flowkit_prefect import _stack
from flowkit_prefect.exceptions import FlowkitError
from flowkit_prefect.settings import get_settings

if TYPE_CHECKING:
    from flowkit_prefect.blocks.qdrant import QdrantStore


def _stack_here(database: str | None = None) -> _stack.Stack:
    settings = get_settings()
    return _stack.Stack(
        Path.cwd(), settings.port, database or settings.database, settings.postgres_port
    )


def _api_url(stack: _stack.Stack) -> str:
    return os.environ.get("PREFECT_API_URL") or stack.api_url


def _ui_url(api_url: str) -> str:
    return os.environ.get("PREFECT_UI_URL") or api_url.rstrip("/").removesuffix("/api")


def cmd_up(args: argparse.Namespace) -> None:
    stack = _stack_here(args.database)
    if args.no_server:
        api_url = _api_url(stack)
        if not _stack.api_healthy(api_url):
            raise FlowkitError(
                f"PREFECT_API_URL={api_url} does not answer. Start that server, or unset "
                "PREFECT_API_URL to let `make run` start a local one."
            )
        print(f"Using the Prefect server at {api_url}")
        return
    print(_stack.start_server(stack))


def cmd_blocks_save(args: argparse.Namespace) -> None:
    from flowkit_prefect._block_docs import save_block_documents

    for ref in save_block_documents(Path(args.folder)):
        print(f"Saved block {ref}")


def cmd_worker(args: argparse.Namespace) -> None:
    stack = _stack_here()
    print(_stack.start_worker(stack, args.name, _api_url(stack)))


def cmd_show_answer(args: argparse.Namespace) -> None:
    """The answer as text with UI links (``prefect artifact inspect`` dumps the raw records)."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactCollectionFilter,
        ArtifactCollectionFilterKey,
    )

    from flowkit_prefect.flows.rag_answer import ANSWER_ARTIFACT_KEY
    from flowkit_prefect.flows.rag_ingest import SUMMARY_ARTIFACT_KEY
    from flowkit_prefect.llm import USAGE_ARTIFACT_KEY

    wanted = [ANSWER_ARTIFACT_KEY, SUMMARY_ARTIFACT_KEY, USAGE_ARTIFACT_KEY]
    keys = ArtifactCollectionFilterKey(any_=wanted)
    from flowkit_prefect.flows._lineage import artifact_asset, describe_lineage

    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts(artifact_filter=ArtifactCollectionFilter(key=keys))
        lineage = describe_lineage(client, artifact_asset(ANSWER_ARTIFACT_KEY, "").key)
    latest = {artifact.key: artifact for artifact in found}
    if ANSWER_ARTIFACT_KEY not in latest:
        raise FlowkitError("No rag-answer artifact yet: run the rag-answer deployment first.")
    answer, summary = latest[ANSWER_ARTIFACT_KEY], latest.get(SUMMARY_ARTIFACT_KEY)
    if summary is not None and summary.description:
        print(f"\nLatest ingest: {summary.description}")
    print("\n" + "=" * 72 + "\n" + str(answer.data).strip() + "\n" + "=" * 72)
    usage = latest.get(USAGE_ARTIFACT_KEY)
    if usage is not None and usage.flow_run_id == answer.flow_run_id and usage.description:
        print(f"\n{usage.description} (the flowkit-llm-usage artifact of this run)")
    ui = _ui_url(_api_url(_stack_here()))
    if answer.flow_run_id:
        print(f"\nThis run in the Prefect UI: {ui}/runs/flow-run/{answer.flow_run_id}")
    print(f"All runs:                   {ui}/runs")
    print(f"Artifacts (answer, ingest summary, progress): {ui}/artifacts")
    if lineage:
        print(
            "\nLineage (Prefect assets; the events are in the Event Feed, filter prefect.asset.*):"
        )
        print("\n".join(f"  {line}" for line in lineage))
        print(f"Event Feed: {ui}/events")


def cmd_docker_up(args: argparse.Namespace) -> None:
    from flowkit_prefect import _docker_stack

    cmd_up(args)
    stack = _stack_here()
    _docker_stack.up(_docker_stack.default_stack(Path.cwd()), stack, _api_url(stack), Path.cwd())


def cmd_docker_down(args: argparse.Namespace) -> None:
    from flowkit_prefect import _docker_stack

    for line in _docker_stack.down(_docker_stack.default_stack(Path.cwd())):
        print(line)


def cmd_down(args: argparse.Namespace) -> None:
    cmd_docker_down(args)
    stack = _stack_here()
    print(_stack.stop_worker(stack))
    print(_stack.stop_server(stack))
    print(_stack.stop_postgres(stack))


def cmd_store_migrate(args: argparse.Namespace) -> None:
    from flowkit_prefect.retrieval.migrate import migrate_local_folder

    moved = migrate_local_folder(args.folder)
    total = sum(m.points_after for m in moved)
    print(f"Migrated {len(moved)} collections ({total} points) to the in-process engine.")


def _store(location: str) -> QdrantStore:
    from flowkit_prefect.blocks.qdrant import QdrantStore

    return QdrantStore(location=location)


def cmd_store_snapshot(args: argparse.Namespace) -> None:
    from flowkit_prefect.retrieval.transfer import write_snapshot

    client = _store(args.location).get_client()
    try:
        count = write_snapshot(client, args.collection, args.file)
    finally:
        client.close()
    print(f"Wrote {count} points of {args.collection!r} to {args.file}.")


def cmd_store_restore(args: argparse.Namespace) -> None:
    from flowkit_prefect.retrieval.transfer import restore_snapshot

    client = _store(args.location).get_client()
    try:
        name, count = restore_snapshot(client, args.file, args.collection, recreate=args.recreate)
    finally:
        client.close()  # the in-process engine builds its indexes here
    print(f"Restored {count} points into {name!r} at {args.location}.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowkit", description="The commands behind make run.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a local Prefect server under .flowkit/")
    up.add_argument("--no-server", action="store_true", help="use PREFECT_API_URL instead")
    up.add_argument(
        "--database", choices=["sqlite", "postgres"], help="the server's database (sqlite)"
    )
    up.set_defaults(func=cmd_up)
    blocks = sub.add_parser("blocks", help="block documents").add_subparsers(
        dest="action", required=True
    )
    save = blocks.add_parser("save", help="save the block documents of a folder")
    save.add_argument("folder", nargs="?", default="blocks")
    save.set_defaults(func=cmd_blocks_save)
    worker = sub.add_parser("worker", help="start a process worker in the background")
    worker.add_argument("name")
    worker.set_defaults(func=cmd_worker)
    show = sub.add_parser("show-answer", help="print the latest rag-answer artifact")
    show.set_defaults(func=cmd_show_answer)
    down = sub.add_parser("down", help="stop what up/worker started")
    down.set_defaults(func=cmd_down)
    docker_up = sub.add_parser("docker-up", help="up, then the Docker work pool stack")
    docker_up.add_argument("--no-server", action="store_true", help="use PREFECT_API_URL instead")
    docker_up.set_defaults(func=cmd_docker_up, database=None)
    docker_down = sub.add_parser("docker-down", help="stop the Docker worker and our dockerd")
    docker_down.set_defaults(func=cmd_docker_down)
    store = sub.add_parser("store", help="the embedded vector store").add_subparsers(
        dest="action", required=True
    )
    migrate = store.add_parser(
        "migrate", help="move a qdrant-client local-mode folder to the in-process engine"
    )
    migrate.add_argument("folder", help="the store folder (the QdrantStore block's location)")
    migrate.set_defaults(func=cmd_store_migrate)
    where = {"required": True, "help": "a store folder or a Qdrant server URL"}
    snapshot = store.add_parser("snapshot", help="write a collection to a snapshot file")
    snapshot.add_argument("collection")
    snapshot.add_argument("file", help="the snapshot file to write (gzipped JSON lines)")
    snapshot.add_argument("--location", **where)
    snapshot.set_defaults(func=cmd_store_snapshot)
    restore = store.add_parser("restore", help="restore a snapshot file into a store")
    restore.add_argument("file")
    restore.add_argument("--location", **where)
    restore.add_argument("--collection", help="restore under this name (default: its own)")
    restore.add_argument("--recreate", action="store_true", help="replace an existing collection")
    restore.set_defaults(func=cmd_store_restore)
    return parser


def app(argv: list[str] | None = None) -> None:
    """Entry point of the ``flowkit`` command."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except FlowkitError as exc:
        print(f"flowkit: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    app()
