"""A generated hostile corpus: nothing crashes, every entry on disk is accounted for (a document
or a skipped source with its reason), and nothing whose real path lies outside the folder is
read. The unreadable-file case runs the loader without root's permission override (setpriv)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkit_prefect import LocalEmbedder, QdrantStore, rag_ingest
from flowkit_prefect.retrieval.loaders import load_folder

OUTSIDE_SENTINEL = f"outside-secret-{uuid.uuid4().hex}"
MAX_BYTES = 64 * 1024


def _build(root: Path, outside: Path) -> set[str]:
    """Write the corpus; return the entries a loader must account for (hidden folders and links
    to folders count once; their insides are not entries of their own)."""
    (outside / "secret.txt").write_text(f"{OUTSIDE_SENTINEL}\n")
    files: dict[str, bytes] = {
        "empty.txt": b"",
        "blank.md": b"   \n\t\n",
        "binary.txt": bytes(range(256)) * 4,
        "nul.md": b"text with a \x00 NUL byte",
        "latin1.txt": "olé, ça va".encode("latin-1"),
        "cp1252.md": "\u201cquotes\u201d \u2013 dash".encode("cp1252"),
        "shift_jis.txt": "日本語のテキスト".encode("shift_jis"),
        "utf16.txt": "utf sixteen".encode("utf-16"),
        "big.txt": b"a" * (MAX_BYTES + 1),
        "deep.html": b"<div>" * 3000 + b"deep text" + b"</div>" * 3000,
        "scripts.html": b"<html><title>T</title><script>alert(1)</script>"
        b"<style>p{}</style><p>Visible words.</p><script>document.write('x')</script></html>",
        "only-script.html": b"<script>alert(1)</script>",
        "broken.json": b'{"text": "unterminated',
        "not-objects.json": b"[1, 2, 3]",
        "broken.jsonl": b'{"text": "good line"}\n{bad\n{"text": "another"}\n',
        "broken.csv": b'id,text\n1,"unclosed quote\n2,fine\n',
        "header-only.csv": b"id,text\n",
        "..%2F..%2Fetc%2Fpasswd.md": b"traversal-looking name, harmless",
        "....md": b"dots only",
        "café/über naïve.md": b"non-ASCII names",
        "a/b/c/d/e/f/deep.md": b"nested six folders down",
        "dup-1.md": b"same contents",
        "dup-2.md": b"same contents",
        "README": b"no extension",
        "good.md": b"# Good\n\nA perfectly ordinary document.",
        ".hidden.md": b"hidden file",
        ".git/config": b"[core]",
        ".git/objects/aa/bb": b"blob",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.symlink(outside / "secret.txt", root / "link-out.md")
    os.symlink("/etc/passwd", root / "passwd.txt")
    os.symlink(root / "good.md", root / "link-in.md")
    os.symlink(root / "a", root / "link-dir")
    os.symlink(outside, root / "link-outside-dir")
    os.symlink(root / "missing.md", root / "broken-link.md")
    os.symlink(root / "loop-b.md", root / "loop-a.md")
    os.symlink(root / "loop-a.md", root / "loop-b.md")
    os.mkfifo(root / "pipe.txt")
    (root / os.fsdecode(b"bad-\xff-name.md")).write_bytes(b"bad name bytes")
    (root / "locked.md").write_text("only root can read this")
    (root / "locked.md").chmod(0o000)
    (root / "locked-dir").mkdir()
    (root / "locked-dir" / "inner.md").write_text("inside a folder nobody may list")
    (root / "locked-dir").chmod(0o000)
    entries = {name for name in files if not name.startswith(".git/")} | {".git/"}
    entries |= {"link-out.md", "passwd.txt", "link-in.md", "link-dir", "link-outside-dir"}
    entries |= {"broken-link.md", "loop-a.md", "loop-b.md", "pipe.txt", "bad-\\xff-name.md"}
    entries |= {"locked.md", "locked-dir/inner.md"}  # as root both are read
    return entries


@pytest.fixture
def hostile() -> Iterator[tuple[Path, set[str]]]:
    base = Path(tempfile.mkdtemp(prefix="flowkit-hostile-"))
    base.chmod(0o755)  # the unprivileged loader must reach it
    root, outside = base / "corpus", base / "outside"
    root.mkdir()
    outside.mkdir()
    try:
        yield root, _build(root, outside)
    finally:
        for path in (root / "locked.md", root / "locked-dir"):
            path.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def _sources(result) -> list[str]:
    return [d.source.split("#")[0] for d in result.documents] + [
        s.source.split("#")[0] for s in result.skipped
    ]


def test_every_entry_is_accounted_for_and_nothing_outside_is_read(
    hostile: tuple[Path, set[str]],
) -> None:
    root, entries = hostile
    result = load_folder(root, max_file_bytes=MAX_BYTES)
    seen = set(_sources(result))
    assert seen == entries, (seen - entries, entries - seen)
    texts = " ".join(d.text for d in result.documents)
    assert OUTSIDE_SENTINEL not in texts and "root:" not in texts
    reasons = {s.source: s.reason for s in result.skipped}
    assert "outside the folder" in reasons["link-out.md"]
    assert "outside the folder" in reasons["passwd.txt"]
    assert "outside the folder" in reasons["link-outside-dir"]
    assert "folder inside the folder" in reasons["link-dir"]
    assert "broken symbolic link" in reasons["broken-link.md"]
    assert "broken symbolic link" in reasons["loop-a.md"]
    assert "not a regular file" in reasons["pipe.txt"]
    assert "not valid UTF-8" in reasons["bad-\\xff-name.md"]
    assert "hidden file" in reasons[".hidden.md"] and "hidden file" in reasons["....md"]
    assert "hidden folder (4 entries inside" in reasons[".git/"]
    assert "too large" in reasons["big.txt"]
    for name in ("binary.txt", "nul.md", "utf16.txt"):
        assert "binary" in reasons[name], name
    for name in ("latin1.txt", "cp1252.md", "shift_jis.txt"):
        assert "not valid UTF-8" in reasons[name], name
    assert "invalid JSON" in reasons["broken.json"]
    assert "HTML page has no visible text" in reasons["only-script.html"]
    by_source = {d.source: d.text for d in result.documents}
    assert by_source["scripts.html"] == "Visible words."
    assert by_source["deep.html"] == "deep text"
    assert by_source["link-in.md"] == by_source["good.md"]  # a link inside is read
    assert by_source["a/b/c/d/e/f/deep.md"] == "nested six folders down"
    assert by_source["café/über naïve.md"] == "non-ASCII names"


def test_an_unprivileged_loader_reports_what_it_cannot_read(
    hostile: tuple[Path, set[str]],
) -> None:
    # root without the capabilities that bypass file permissions, so modes count again
    caps = "-dac_override,-dac_read_search"
    drop = ["setpriv", "--bounding-set", caps, "--inh-caps", caps]
    if os.geteuid() != 0:
        drop = []  # an ordinary user: the modes count already
    elif shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop root's file-permission override")
    root, _ = hostile
    script = (
        "import json, sys\n"
        "from flowkit_prefect.retrieval.loaders import load_folder\n"
        f"r = load_folder(sys.argv[1], max_file_bytes={MAX_BYTES})\n"
        "print(json.dumps({'docs': [d.source for d in r.documents],"
        " 'skipped': {s.source: s.reason for s in r.skipped}}))\n"
    )
    done = subprocess.run(
        [*drop, sys.executable, "-c", script, str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert "Permission denied" in report["skipped"]["locked.md"]
    assert "unreadable folder" in report["skipped"]["locked-dir"]
    assert "good.md" in report["docs"]


def test_rag_ingest_completes_on_the_hostile_corpus(
    harness: str, hostile: tuple[Path, set[str]], tmp_path: Path
) -> None:
    root, entries = hostile
    name = f"hostile-{uuid.uuid4().hex[:8]}"
    QdrantStore(location=str(tmp_path / "qdrant")).save(name)
    LocalEmbedder().save("test-minilm", overwrite=True)
    summary = rag_ingest(
        folder=str(root),
        collection="hostile",
        qdrant_store=f"flowkit-qdrant-store/{name}",
        embedder="flowkit-local-embedder/test-minilm",
        max_file_bytes=MAX_BYTES,
    )
    assert summary.accounted and summary.ingested + summary.skipped == summary.found
    assert {r.source.split("#")[0] for r in summary.sources} == entries
    assert summary.ingested >= 10 and summary.chunks_written >= summary.ingested
