"""A headless browser for checking what the Prefect UI shows: Debian's Chromium (apt's
``chromium``, installed when missing) driven by Playwright for Python with
``executable_path=/usr/bin/chromium``. Playwright's own browser download is never used.

    with ui_browser(stack.ui_url, screenshot_dir(tmp_path)) as browser:
        browser.open_flow_run(run_id, "Artifacts", ["rag-answer"], shot="rag-answer-artifacts")
        browser.open_artifact(artifact_id, ["45 days"], shot="rag-answer-artifact-rag-answer")

Expected items are texts (substring, case-insensitive, visible on the page or in the given
scope) or Playwright selectors starting with ``css=`` / ``xpath=`` (a visible element must
match), e.g. ``"css=svg[aria-roledescription^=flowchart]"`` for a rendered Mermaid graph.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # nothing but loopback resolves (the route in ui_browser also aborts other requests)
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
]
# Hosts the Prefect UI asks for by itself; aborted like every other, but expected: the V2 UI's
# Amplitude client fetches its remote config on load even with analytics off (it sends no
# events then: Prefect gates tracking on the server's analytics_enabled).
KNOWN_OUTSIDE_HOSTS = {"sr-client-cfg.amplitude.com"}
VIEWPORT: ViewportSize = {"width": 1400, "height": 1000}
MAX_SHOT_HEIGHT = 3000  # px: a full-page screenshot grows to its content, up to this
# every URL but loopback (and data:/blob:), as a regex the browser side matches
NOT_LOOPBACK = re.compile(
    r"^(?!(data|blob):|(https?|wss?)://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/|$))"
)


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def ensure_chromium() -> str:
    """Debian's Chromium at /usr/bin/chromium; installs apt's ``chromium`` when it is missing
    (apt-get update and one retry when the first install fails). Skips the test only when
    there is no apt-get; an install that fails is an error."""
    if CHROMIUM.exists():
        return f"{CHROMIUM} is installed"
    if shutil.which("apt-get") is None:
        pytest.skip(f"{CHROMIUM} is missing and there is no apt-get to install Debian's chromium")
    started = time.monotonic()
    install = ("install", "-y", "--no-install-recommends", "chromium")
    done = _apt(*install)
    if done.returncode != 0:  # an outdated package list is the usual cause
        _apt("update")
        done = _apt(*install)
    assert done.returncode == 0 and CHROMIUM.exists(), (
        f"apt-get install chromium failed (exit {done.returncode}):\n"
        f"{(done.stdout + done.stderr)[-3000:]}"
    )
    return f"Installed chromium with apt in {time.monotonic() - started:.0f} s"


def screenshot_dir(tmp_path: Path) -> Path:
    """Where screenshots go: ``FLOWKIT_UI_SCREENSHOTS`` when set (relative to the current
    folder), else the test's tmp path. Printed, so a run's output names it."""
    configured = os.environ.get("FLOWKIT_UI_SCREENSHOTS")
    folder = Path(configured).resolve() if configured else tmp_path / "ui-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nUI screenshots: {folder}")
    return folder


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class UiBrowser:
    """One page of one headless Chromium, pointed at a Prefect UI."""

    def __init__(self, page: Any, ui_url: str, out_dir: Path, blocked: list[str]) -> None:
        self.page = page
        self.ui_url = ui_url.rstrip("/")
        self.out_dir = out_dir
        self.blocked = blocked  # non-loopback requests the page tried (aborted)
        self.shots: list[Path] = []

    @property
    def blocked_unknown(self) -> list[str]:
        """The aborted non-loopback requests to hosts other than KNOWN_OUTSIDE_HOSTS."""
        return [url for url in self.blocked if urlsplit(url).hostname not in KNOWN_OUTSIDE_HOSTS]

    def goto(self, path: str, ready: str) -> None:
        """Open a UI path and wait until the SPA rendered ``ready`` (a selector)."""
        self.page.goto(self.ui_url + path, wait_until="domcontentloaded")
        self.page.locator(ready).first.wait_for(state="visible")

    def follow(self, path: str, ready: str) -> None:
        """Like goto, but through the page's own link to ``path`` when one is shown (the SPA
        navigates without loading the app again): how a person gets there, and faster."""
        link = self.page.locator(f'a[href="{path}"]').filter(visible=True)
        if not link.count():
            self.goto(path, ready)
            return
        link.first.click()
        self.page.wait_for_url(lambda url: urlsplit(url).path == path, wait_until="commit")
        self.page.locator(ready).first.wait_for(state="visible")

    def at(self, path: str) -> bool:
        """Whether the page shows ``path`` (its query aside) already."""
        return urlsplit(self.page.url).path == path

    def expect(self, expected: Iterable[str], scope: str | None = None, what: str = "") -> None:
        """Wait until each expected text (or css=/xpath= selector) is visible, in ``scope``
        (a selector) when given; the assertion names what is missing."""
        root = self.page.locator(scope).first if scope else self.page
        for item in expected:
            if item.startswith(("css=", "xpath=")):
                target = root.locator(item)
            else:
                target = root.get_by_text(item)
            try:
                target.filter(visible=True).first.wait_for(state="visible")
            except Exception as exc:  # playwright's TimeoutError, with the page text
                shot = self.shot(f"missing-{slug(what or 'page')}")
                text = self.page.locator("body").inner_text()[:2000]
                raise AssertionError(
                    f"{what or self.page.url}: {item!r} is not shown (screenshot {shot}); "
                    f"the page shows:\n{text}"
                ) from exc

    def shot(self, name: str) -> Path:
        """A full-page screenshot ``<name>.png``: the viewport grows to the height of the
        page's scrolling content (the Prefect UI scrolls inside its layout, not the page)."""
        path = self.out_dir / f"{slug(name)}.png"
        height = self.page.evaluate(
            """() => Math.max(document.documentElement.scrollHeight, ...Array.from(
                document.querySelectorAll('*'), (e) => {
                    const overflow = getComputedStyle(e).overflowY;
                    return overflow === 'auto' || overflow === 'scroll'
                        ? e.getBoundingClientRect().top + window.scrollY + e.scrollHeight : 0;
                }))"""
        )
        tall = min(max(int(height), VIEWPORT["height"]), MAX_SHOT_HEIGHT)
        try:
            if tall > VIEWPORT["height"]:
                self.page.set_viewport_size({"width": VIEWPORT["width"], "height": tall})
                self.page.wait_for_timeout(150)  # one relayout and repaint
            # animations finished: a page the SPA navigated to fades in
            self.page.screenshot(path=str(path), full_page=True, animations="disabled")
        finally:
            if tall > VIEWPORT["height"]:
                self.page.set_viewport_size(VIEWPORT)
        self.shots.append(path)
        return path

    # The Prefect UI's pages (the V1 UI at /, the V2 UI at /v2)

    def open_flow_run(
        self, run_id: str, tab: str, expected: Iterable[str], shot: str, ui: str = "v1"
    ) -> None:
        """A flow run's page, one of its tabs (Logs, Task Runs, Subflow Runs, Artifacts,
        Details, Parameters, Job Variables); the expected items within that tab's panel.
        The page loads once for consecutive tabs of one run."""
        path = f"{'/v2' if ui == 'v2' else ''}/runs/flow-run/{run_id}"
        loaded = not self.at(path)
        if ui == "v2":
            if loaded:
                self.goto(path, "[role=tablist]")
            self.page.get_by_role("tab", name=tab, exact=True).click()
            scope = "[role=tabpanel][data-state=active]"
        else:
            if loaded:  # the tabs of a run not loaded yet are hidden: wait for them
                self.goto(path, "li.p-tab")
            self.page.locator("li.p-tab", has_text=re.compile(f"^{re.escape(tab)}$")).click()
            scope = f"#{slug(tab)}-content"
        self.expect(expected, scope, what=f"flow run {run_id}, tab {tab}")
        if loaded:
            self.wait_for_run_graph()
        self.shot(shot)

    def open_artifact(
        self, artifact_id: str, expected: Iterable[str], shot: str, ui: str = "v1"
    ) -> None:
        """An artifact's page (its rendered markdown, table or progress); through its card
        when the page shows one (a flow run's Artifacts tab)."""
        if ui == "v2":
            self.follow(f"/v2/artifacts/artifact/{artifact_id}", "main")
            scope = "main"
        else:
            self.follow(f"/artifacts/artifact/{artifact_id}", ".artifact-data-view")
            scope = None
        self.expect(expected, scope, what=f"artifact {artifact_id}")
        self.shot(shot)

    def open_events(self, events: list[str], expected: Iterable[str], shot: str) -> None:
        """The Event Feed filtered to event names (``flowkit.*`` is a prefix)."""
        query = "&".join(f"events={name}" for name in events)
        self.goto(f"/events?{query}", ".events__content")
        self.expect(expected, ".events__content", what=f"events {', '.join(events)}")
        self.shot(shot)

    def wait_for_run_graph(self) -> None:
        """The run graph is a canvas: wait until it has a size (it draws right after)."""
        graph = self.page.locator("canvas")  # V1: .flow-run-graph canvas
        if graph.count():
            graph.first.wait_for(state="visible")
            self.page.wait_for_timeout(300)  # its first frame; no DOM shows when it is drawn


@contextlib.contextmanager
def ui_browser(ui_url: str, out_dir: Path, timeout_ms: float = 20_000) -> Iterator[UiBrowser]:
    """One headless Chromium (a fresh temporary profile) for every page of a test; closed
    (and its profile removed) on the way out. Requests that are not to loopback are aborted."""
    print(ensure_chromium())
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the dev extra installs it
        pytest.fail("playwright is not installed: pip install -e '.[dev]'")
    blocked: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="flowkit-chromium-") as profile,
        sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=LAUNCH_ARGS,
            viewport=VIEWPORT,
            service_workers="block",
        )
        try:

            def outside(route: Any) -> None:
                blocked.append(route.request.url)
                route.abort()

            context.route(NOT_LOOPBACK, outside)
            context.set_default_timeout(timeout_ms)
            page = context.pages[0] if context.pages else context.new_page()
            yield UiBrowser(page, ui_url, out_dir, blocked)
        finally:
            context.close()
