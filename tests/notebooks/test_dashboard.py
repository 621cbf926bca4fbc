"""``slipstream dashboard`` in a real browser: headless Chromium (Debian's, driven by
Playwright, no browser download) opens the page Voilà serves, finds the run table with the
run deployed in this module, selects it to see its timeline, and saves a screenshot (the
test's artifact, in its temporary folder). It fails on an empty table or a traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import cli
from tests.notebooks.conftest import destroy_left

CHROMIUM = Path("/usr/bin/chromium")
START_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A home with one small run of ``cluster`` (a head and one worker), Ready."""
    folder = tmp_path_factory.mktemp("dash") / "home"
    done = cli(folder, "deploy", "cluster", "--input", "worker:multiplicity=1", "--json")
    try:
        assert done.returncode == 0, done.stderr
        run_id = done.stdout.split('"id": "')[1].split('"')[0]
        yield folder, run_id
    finally:
        destroy_left(folder)


@pytest.fixture(scope="module")
def dashboard(home: tuple[Path, str]) -> Iterator[str]:
    """``slipstream dashboard`` on a free loopback port; its URL once it listens."""
    folder, _ = home
    port = free_port()
    log = folder.parent / "dashboard.log"
    env = dict(os.environ, SLIPSTREAM_USER="tester")
    env.pop("SLIPSTREAM_HOME", None)  # --home says it
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine.cli.app",
                "dashboard",
                "--port",
                str(port),
                "--home",
                str(folder),
            ],
            cwd=folder.parent,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text(errors="replace")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the dashboard did not listen:\n{log.read_text()}")
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.send_signal(signal.SIGTERM)  # Voilà (the process the command became) stops
        try:  # its kernels with it
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_the_dashboard_shows_the_run_in_a_real_browser(
    dashboard: str, home: tuple[Path, str], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.is_file(), "Debian's chromium is missing: make tools installs it"
    _, run_id = home
    shot = tmp_path / "dashboard.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            # Root in a container: Chromium's own sandbox needs user namespaces it may lack.
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(dashboard, timeout=120_000)
            page.wait_for_selector("table.ss-runs, .ss-runs-empty, .ss-error", timeout=120_000)
            assert page.locator(".ss-runs-empty").count() == 0, "the run table is empty"
            rows = page.locator("table.ss-runs tbody tr")
            assert rows.count() == 1
            assert rows.first.inner_text().split()[:4] == [run_id, "cluster", "Ready", "tester"]
            page.locator(".widget-select select").first.select_option(index=0)
            page.wait_for_selector("svg.ss-timeline", timeout=120_000)
            assert page.locator("svg.ss-timeline rect[data-state='Executing']").count() >= 2
            assert page.locator("table.ss-instances tbody tr").count() == 2
            page.screenshot(path=str(shot), full_page=True)
            text = page.content()
        finally:
            browser.close()
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    for sign in ("Traceback", "There was an error when executing cell", "ss-error"):
        assert sign not in text, f"the page shows {sign!r}"
