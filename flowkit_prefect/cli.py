"""``flowkit``: the commands behind ``make run`` / ``make stop``.

flowkit up [--no-server]        start a local Prefect server (SQLite) under .flowkit/
flowkit blocks save [DIR]       save the block documents in DIR (default: blocks/)
flowkit work-pool NAME          create a process work pool if it is missing
flowkit worker NAME             start a process worker for the pool, in the background
flowkit show-answer             print the latest rag-answer artifact and where to see it
flowkit down                    stop the worker and server that `up`/`worker` started
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from flowkit_prefect import _stack
from flowkit_prefect.exceptions import FlowkitError


def _stack_here() -> _stack.Stack:
    return _stack.Stack(Path.cwd(), int(os.environ.get("FLOWKIT_PORT", _stack.DEFAULT_PORT)))


def _api_url(stack: _stack.Stack) -> str:
    return os.environ.get("PREFECT_API_URL") or stack.api_url


def _ui_url(api_url: str) -> str:
    return os.environ.get("PREFECT_UI_URL") or api_url.rstrip("/").removesuffix("/api")


def cmd_up(args: argparse.Namespace) -> None:
    stack = _stack_here()
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


def cmd_work_pool(args: argparse.Namespace) -> None:
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=args.name, type="process"))
            print(f"Created process work pool {args.name!r}")
        except ObjectAlreadyExists:
            print(f"Work pool {args.name!r} exists")


def cmd_worker(args: argparse.Namespace) -> None:
    stack = _stack_here()
    print(_stack.start_worker(stack, args.name, _api_url(stack)))


def cmd_show_answer(args: argparse.Namespace) -> None:
    from prefect.artifacts import Artifact

    from flowkit_prefect.flows.rag_answer import ANSWER_ARTIFACT_KEY
    from flowkit_prefect.flows.rag_ingest import SUMMARY_ARTIFACT_KEY

    artifact = Artifact.get(ANSWER_ARTIFACT_KEY)
    ui = _ui_url(_api_url(_stack_here()))
    if artifact is None:
        raise FlowkitError("No rag-answer artifact yet: run the rag-answer deployment first.")
    summary = Artifact.get(SUMMARY_ARTIFACT_KEY)
    if summary is not None and summary.description:
        print(f"\nLatest ingest: {summary.description}")
    print("\n" + "=" * 72)
    print(str(artifact.data).strip())
    print("=" * 72)
    if artifact.flow_run_id:
        print(f"\nThis run in the Prefect UI: {ui}/runs/flow-run/{artifact.flow_run_id}")
    print(f"All runs:                   {ui}/runs")
    print(f"Artifacts (answer, ingest summary, progress): {ui}/artifacts")


def cmd_down(args: argparse.Namespace) -> None:
    stack = _stack_here()
    for name in ("worker", "server"):
        print(_stack.stop_process(stack, name))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowkit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a local Prefect server under .flowkit/")
    up.add_argument("--no-server", action="store_true", help="use PREFECT_API_URL instead")
    up.set_defaults(func=cmd_up)
    blocks = sub.add_parser("blocks", help="block documents").add_subparsers(
        dest="action", required=True
    )
    save = blocks.add_parser("save", help="save the block documents of a folder")
    save.add_argument("folder", nargs="?", default="blocks")
    save.set_defaults(func=cmd_blocks_save)
    pool = sub.add_parser("work-pool", help="create a process work pool if missing")
    pool.add_argument("name")
    pool.set_defaults(func=cmd_work_pool)
    worker = sub.add_parser("worker", help="start a process worker in the background")
    worker.add_argument("name")
    worker.set_defaults(func=cmd_worker)
    show = sub.add_parser("show-answer", help="print the latest rag-answer artifact")
    show.set_defaults(func=cmd_show_answer)
    down = sub.add_parser("down", help="stop what up/worker started")
    down.set_defaults(func=cmd_down)
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
