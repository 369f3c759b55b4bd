"""The HTML report, opened in a real headless Chromium with the network off."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

import crmcore
from crmcore.report.page import SECTIONS, script_json
from crmcore.synthetic import SyntheticBase
from tests.io.test_command_line import crmcore_cli
from tests.support import unavailable

HOSTILE_NAME = '</script><script>document.title="pwned"</script><img src=x onerror=alert(1)>'
HOSTILE_POINT = "<img src=y onerror=alert(2)>"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        unavailable("Debian's chromium is not installed (scripts/setup.sh installs it)")
    return found


def browse(page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Chromium headless, with every network request sent to a closed port on loopback."""
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9",
         "--proxy-bypass-list=<-loopback>", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000", *extra, page.as_uri()],
        capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    base = SyntheticBase(size=300, seed=2)
    url = f"sqlite:///{folder / 'crm.db'}"
    with crmcore.open(url, clock=lambda: base.as_of) as crm:
        base.load(crm)
        model = crm.analytical.fit_clv(currency="EUR")
        [first, *_] = crm.analytical.churn_alerts(model=model, emit=False)
        crm.customers.change(first.customer_id, name=HOSTILE_NAME)  # first on the churn list
        crm.interactions.log(first.customer_id, channel="visit", direction="inbound",
                             service_point=HOSTILE_POINT, satisfaction=5, at=base.as_of - timedelta(days=1))
        crm.marketing.rehearse(days=120, control_fraction=0.3)  # a launched campaign, for the lift chart
    out = folder / "report.html"
    done = crmcore_cli("report", "--url", url, "--out", str(out), "--as-of", base.as_of.isoformat())
    assert done.returncode == 0, done.stderr
    return out


def test_the_file_needs_nothing_from_the_network(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", page, re.I)
    assert "<link" not in page and "<iframe" not in page


def test_customer_text_is_escaped(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    assert HOSTILE_NAME not in page and HOSTILE_POINT not in page
    assert "&lt;/script&gt;&lt;script&gt;document.title=&quot;pwned&quot;" in page  # the churn table
    specs = re.search(r'<script id="crmcore-specs" type="application/json">(.*?)</script>', page, re.S)
    assert specs is not None and HOSTILE_POINT in json.dumps(json.loads(specs.group(1)), ensure_ascii=False)


def test_chromium_renders_every_chart_without_console_errors(report: Path, tmp_path: Path) -> None:
    page = report.read_text(encoding="utf-8")
    charts = re.findall(r'<div class="chart" id="(chart-[a-z_]+)"', page)
    missing = re.findall(r'data-missing="([a-z_]+)"', page)
    assert sorted(c.removeprefix("chart-") for c in charts) == sorted(name for name, _, _ in SECTIONS)
    assert missing == []
    dumped = browse(report, "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    assert 'data-charts="done"' in dom
    for chart in charts:
        element = re.search(rf'<div [^>]*id="{chart}"[^>]*>(.*?)</section>', dom, re.S)
        assert element is not None, chart
        opening = element.group(0).split(">", 1)[0]
        assert 'data-rendered="yes"' in opening, chart
        assert "<svg" in element.group(1) and "role-mark" in element.group(1), chart
    lift = re.search(r'id="chart-campaign_lift".*?</section>', dom, re.S)
    assert lift is not None and "A/A rehearsal" in lift.group(0)
    # each measure's interval is a rule from low to high (a line of non-zero length) with its point estimate
    intervals = re.search(r'<g class="mark-rule role-mark layer_0_marks"[^>]*>(.*?)</g>', lift.group(0), re.S)
    points = re.search(r'<g class="mark-symbol role-mark layer_1_marks"[^>]*>(.*?)</g>', lift.group(0), re.S)
    assert intervals is not None and points is not None
    lengths = [float(x) for x in re.findall(r'<line [^>]*x2="([-0-9.]+)"', intervals.group(1))]
    assert len(lengths) == 2 and all(length > 0 for length in lengths)  # response and conversion
    assert points.group(1).count("<path") == 2
    assert "<title>Customer report</title>" in dom  # the hostile name did not run
    outside_scripts = re.sub(r"<script\b.*?</script>", "", dom, flags=re.S)
    assert "<img" not in outside_scripts and "HOSTILE" not in outside_scripts
    assert "&lt;img src=x onerror=alert(1)&gt;" in outside_scripts  # shown as text, in the churn table
    console = [line for line in dumped.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    shot = tmp_path / "report.png"
    taken = browse(report, f"--screenshot={shot}", "--window-size=1000,5000")
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 100_000


def test_script_json_cannot_close_its_element() -> None:
    text = script_json({"name": "</script><!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"name": "</script><!-- & \u2028"}


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgresql"])
def test_customer_counts_agree_on_every_backend(backend: str, tmp_path: Path) -> None:
    from collections import Counter

    from crmcore.report.figures import customer_counts
    from tests.analytics.conftest import open_backend

    base = SyntheticBase(size=80, seed=4)
    expected = Counter((f"{c.created_at:%Y-%m}", str(c.lifecycle), c.tier) for c in base.customers())
    for crm in open_backend(backend, tmp_path, clock=lambda: base.as_of):
        base.load(crm)
        with crm.reading() as uow:
            found = {(m, lc, t): n for m, lc, t, n in customer_counts(uow)}
        assert found == dict(expected)
