"""The live dashboard in a real browser (headless Chromium) against a real worker."""

from __future__ import annotations

import http.server
import re
import subprocess
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from streams.dashboard import DASHBOARD_HTML
from tests.factories import event, iso
from tests.integration.harness import ROOT, produce, wait_for

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
APP_SOURCE = ROOT / "streams" / "app.py"

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)",
)


def status(worker):
    with urllib.request.urlopen(
        f"http://127.0.0.1:{worker.web_port}/api/status", timeout=30
    ) as response:
        return orjson.loads(response.read())


def overspend(bootstrap, worker):
    """shop (starter, $5/day) spends $5.60 today; acme stays well within its budget."""
    now = datetime.now(UTC)
    base = max(now - timedelta(minutes=3), now.replace(hour=0, minute=0, second=0, microsecond=0))
    docs = [
        event(tenant_id="shop", timestamp=iso(base + timedelta(seconds=i)), cost_usd="0.70")
        for i in range(8)
    ] + [
        event(tenant_id="acme", timestamp=iso(base + timedelta(seconds=i)), cost_usd="0.01")
        for i in range(5)
    ]
    produce(
        bootstrap,
        worker.env["LLMTEL_EVENTS_TOPIC"],
        [(d["tenant_id"].encode(), orjson.dumps(d)) for d in docs],
    )
    wait_for(
        lambda: {a["rule"] for a in status(worker)["alerts_firing"]} >= {"budget_exceeded"},
        what="shop's budget_exceeded in /api/status",
    )


def serves_dashboard(worker) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/", timeout=30) as r:
            return 'id="spend-body"' in r.read().decode()
    except urllib.error.HTTPError:
        return False


class _Proxy(http.server.ThreadingHTTPServer):
    """The dashboard page, with /api/status forwarded to a worker (until app.py serves it)."""

    daemon_threads = True

    def __init__(self, worker_port):
        self.worker_port = worker_port

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.startswith("/api/status"):
                    url = f"http://127.0.0.1:{worker_port}/api/status"
                    with urllib.request.urlopen(url, timeout=30) as r:
                        body, kind = r.read(), "application/json"
                else:
                    body, kind = DASHBOARD_HTML.encode(), "text/html; charset=utf-8"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def chromium(tmp_path, url, *args):
    profile = tmp_path / "chromium-profile"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=8000",
        *args,
        url,
    ]
    done = subprocess.run(command, capture_output=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout.decode(errors="replace")


@needs_chromium
def test_dashboard_shows_tenants_and_the_firing_alert(bootstrap, start_worker, tmp_path):
    worker = start_worker()
    overspend(bootstrap, worker)
    proxy = None
    if serves_dashboard(worker):
        url = f"http://127.0.0.1:{worker.web_port}/"
    else:  # streams/app.py does not call add_dashboard_view yet: the same page, served here
        proxy = _Proxy(worker.web_port)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{proxy.server_address[1]}/"
    try:
        dom = chromium(tmp_path, url, "--dump-dom")
        assert 'id="conn" class="live"' in dom, dom[:3000]
        alerts = dom[dom.index('id="alerts-body"') : dom.index('id="degraded-body"')]
        assert "budget_exceeded" in alerts and "shop" in alerts
        spend = dom[dom.index('id="spend-body"') : dom.index('id="alerts-body"')]
        assert "<svg" in spend and ">shop<" in spend and ">acme<" in spend
        assert "$5.60 of $5.00 (112 %)" in spend
        degraded = dom[dom.index('id="degraded-body"') : dom.index('id="pipeline-body"')]
        assert "route_cheaper_model" in degraded and "budget_exceeded" in degraded
        assert re.search(r"<b>2</b><span>tenants</span>", dom)

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        shot.unlink(missing_ok=True)
        chromium(tmp_path, url, f"--screenshot={shot}", "--window-size=1280,900")
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000
    finally:
        if proxy is not None:
            proxy.shutdown()
            proxy.server_close()


@pytest.mark.skipif(
    "add_dashboard_view" not in APP_SOURCE.read_text(),
    reason="streams/app.py does not call add_dashboard_view(app, runtime.policy) yet",
)
def test_worker_serves_the_dashboard_at_root_and_dashboard(start_worker):
    worker = start_worker()
    for path in ("/", "/dashboard"):
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}{path}", timeout=30) as r:
            assert r.headers["Content-Type"].startswith("text/html")
            page = r.read().decode()
        assert page.startswith("<!DOCTYPE html>") and 'fetch("api/status"' in page
        assert "http://" not in page and "https://" not in page


def test_dashboard_page_is_self_contained():
    assert DASHBOARD_HTML.startswith("<!DOCTYPE html>")
    assert "http://" not in DASHBOARD_HTML and "https://" not in DASHBOARD_HTML
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", DASHBOARD_HTML)
    assert '"gold": {"availability": 0.999' in DASHBOARD_HTML  # tier targets inlined
