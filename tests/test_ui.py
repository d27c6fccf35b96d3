"""The dashboard at `/ui`, on real parts: `custseg serve` processes on free ports over
SQLite stores with models trained by `custseg run`, urllib for what a browser would not
send (a form without its token, a forged session), and real headless Chromium (Debian's
chromium and chromium-driver) for a person's path through it: from the overview to a
pending version, approved with a name and a comment, and the endpoint switching to it.

Set CUSTSEG_SCREENSHOTS=docs to refresh the screenshots in docs/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import needs_chromium
from custseg.core.sample import generate_customers
from custseg.serving.metrics import Metrics
from custseg.ui.session import SESSION_SECONDS, Sessions
from custseg.ui.traffic import Traffic

CUSTSEG = Path(sys.executable).parent / "custseg"
REPO = Path(__file__).resolve().parents[1]
ENDPOINT = "clustering-model-endpoint-dev"
GROUP = "clustering-model-model-group"
RECORD = {"Age": 30, "Income": 50000, "Purchases": 10, "Gender": "Male"}
HOSTILE = "<script>window.pwned=1</script>"
KEY = "s3cret-ui-key"


# -- a served project ------------------------------------------------------------------------

class Served:
    """A project folder, its config, and `custseg serve` running on it."""

    def __init__(self, root: Path, port: int, env: dict[str, str]) -> None:
        self.root, self.port, self.env = root, port, env
        self.config = root / "pipeline_config.yaml"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if k != "CUSTSEG__ENDPOINT__AUTOSTART"}
        result = subprocess.run([str(CUSTSEG), *args, "-c", str(self.config)], cwd=self.root,
                                capture_output=True, text=True, timeout=180, check=False,
                                env={**base, **self.env})
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def serve(self) -> None:
        self.proc = subprocess.Popen([str(CUSTSEG), "serve", "-c", str(self.config)],
                                     cwd=self.root, start_new_session=True,
                                     env={**os.environ, **self.env},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while fetch(f"{self.url}/openapi.json")[0] != 200:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_served(root: Path, **config: Any) -> Served:
    root.mkdir(parents=True, exist_ok=True)
    import pyarrow.csv as pacsv

    table, _ = generate_customers(1500, segments=3, seed=1)
    pacsv.write_csv(table, root / "customers.csv")
    port = free_port()
    endpoint = {"port": port, "workers": 2, "autostart": False, **config.pop("endpoint", {})}
    (root / "pipeline_config.yaml").write_text(yaml.safe_dump(
        {"data_uri": "customers.csv", "store": "store", "n_clusters": 3,
         "endpoint": endpoint, **config}))
    return Served(root, port, {})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch(url: str, form: dict[str, str] | None = None, cookie: str | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """One request, redirects not followed: (status, headers, body)."""
    data = None if form is None else urllib.parse.urlencode(form).encode()
    sent = {**({"Cookie": cookie} if cookie else {}), **(headers or {})}
    if data is not None:
        sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, data=data, headers=sent), timeout=60) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, {}, ""


def session_cookie(headers: dict[str, str]) -> str:
    """`custseg_ui_PORT=VALUE` from a Set-Cookie header."""
    found = re.search(r"(custseg_ui_\d+)=([^;]*)", headers.get("set-cookie", ""))
    assert found, headers
    return f"{found.group(1)}={found.group(2)}"


def invoke(served: Served, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{served.url}/endpoints/{ENDPOINT}/invocations", json.dumps(RECORD).encode(),
        {"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=30) as r:
        return r.status, r.headers["x-custseg-model-version"]


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """deploy.require_approval: version 1 approved (by a hostile name, with a hostile
    comment) and served, version 2 trained and waiting for review."""
    served = make_served(tmp_path_factory.mktemp("gated"), deploy={"require_approval": True})
    assert served.cli("run").returncode == 0
    served.serve()
    try:
        approved = served.cli("models", "approve", "1", "--by", f"<b>{HOSTILE}</b>",
                              "--comment", HOSTILE)
        assert approved.returncode == 0, approved.stderr
        assert served.cli("run", "-p", "random_state=7").returncode == 0
        yield served
    finally:
        served.stop()


# -- sessions and traffic (pure) -------------------------------------------------------------

def test_a_session_holds_a_mac_of_the_key_never_the_key(tmp_path: Path) -> None:
    clock = [1_000_000.0]
    sessions = Sessions(KEY, tmp_path, now=lambda: clock[0])
    value = sessions.new()
    nonce = sessions.session(value)
    assert nonce is not None and KEY not in value
    issued, _, mac = value.split(".")
    assert sessions.session(f"{issued}.{nonce}.{'0' * len(mac)}") is None  # forged mac
    assert sessions.session(f"{int(issued) + 1}.{nonce}.{mac}") is None  # altered time
    assert Sessions("another-key", tmp_path).session(value) is None  # a rotated key
    assert sessions.csrf_ok(nonce, sessions.csrf_token(nonce))
    other = sessions.session(sessions.new())
    assert other is not None and not sessions.csrf_ok(other, sessions.csrf_token(nonce))
    assert not sessions.csrf_ok(nonce, None) and not sessions.csrf_ok(nonce, "")
    clock[0] += SESSION_SECONDS
    assert sessions.session(value) is None  # expired
    assert sessions.key_matches(KEY) and not sessions.key_matches(KEY + "x")


def test_without_a_key_the_workers_share_a_secret_in_the_store_folder(tmp_path: Path) -> None:
    first, second = Sessions(None, tmp_path), Sessions(None, tmp_path)
    assert not first.login_required and not first.key_matches("")
    nonce = second.session(first.new())  # another worker checks it
    assert nonce is not None
    assert second.csrf_ok(nonce, first.csrf_token(nonce))
    assert (tmp_path / "ui-secret").stat().st_mode & 0o077 == 0
    assert Sessions(None, tmp_path / "..").session(first.new()) is None  # another store


def test_traffic_rate_and_latency_over_the_window() -> None:
    clock = [0.0]
    traffic = Traffic(clock=lambda: clock[0])
    assert traffic.figures("e").rate is None
    metrics = Metrics()
    metrics.observe("e", "g/1", 200, 0.002, 1)
    traffic.look(_copy(metrics))
    first = traffic.figures("e")
    assert first.total_requests == 1 and first.rate is None  # one look: no rate yet
    for _ in range(18):
        metrics.observe("e", "g/1", 200, 0.004, 1)
    metrics.observe("e", "g/1", 400, 0.0, 0)
    metrics.observe("e", "g/1", 200, 0.2, 1)
    metrics.observe("other", "g/1", 200, 0.2, 1)  # another endpoint: not counted
    clock[0] = 10.0
    traffic.look(_copy(metrics))
    t = traffic.figures("e")
    assert t.span == 10.0 and t.rate == pytest.approx(2.0) and t.error_rate == 0.1
    assert t.total_requests == 21 and t.total_errors == 1
    assert t.window_mean == pytest.approx((18 * 0.004 + 0.2) / 19)
    assert t.p50 == 0.005 and t.p95 == 0.25  # the buckets' upper bounds
    for tick in range(50):  # many views in a second: one look kept for them
        clock[0] = 10.0 + tick / 100
        traffic.look(_copy(metrics))
    assert len(traffic._looks) == 2 and traffic.figures("e").span == pytest.approx(10.49)
    clock[0] = 100.0  # the first looks fall out of the window
    traffic.look(_copy(metrics))
    assert traffic.figures("e").rate is None


def _copy(metrics: Metrics) -> Metrics:
    out = Metrics()
    out.add(metrics.snapshot())
    return out


# -- the served dashboard, over HTTP ---------------------------------------------------------

def test_custseg_ui_opens_the_running_servers_dashboard(gated: Served, tmp_path: Path
                                                        ) -> None:
    result = gated.cli("ui", "--no-open")
    assert result.returncode == 0
    assert result.stdout.strip() == f"Dashboard: {gated.url}/ui"
    opened = tmp_path / "opened.txt"  # $BROWSER: the command webbrowser runs with the URL
    writer = f"import sys; open({str(opened)!r}, 'w').write(sys.argv[1])"
    gated.env["BROWSER"] = f'{sys.executable} -c "{writer}" %s'
    try:
        result = gated.cli("ui")
    finally:
        del gated.env["BROWSER"]
    assert result.returncode == 0 and result.stdout.strip() == f"Dashboard: {gated.url}/ui"
    assert opened.read_text() == f"{gated.url}/ui"


def test_custseg_ui_without_a_server_says_how_to_start_one(tmp_path: Path) -> None:
    served = make_served(tmp_path)
    assert served.cli("deploy").returncode == 0
    result = served.cli("ui", "--no-open")
    assert result.returncode == 8 and "custseg serve" in result.stderr


def test_every_value_shown_is_escaped(gated: Served) -> None:
    status, headers, _ = fetch(f"{gated.url}/ui")
    cookie = session_cookie(headers)
    assert "script-src" not in headers["content-security-policy"]  # default-src 'none'
    pages = ["", "/models", f"/models/{GROUP}/1", f"/models/{GROUP}/1/report",
             f"/endpoints/{ENDPOINT}", "/executions"]
    for path in pages:
        status, _, body = fetch(f"{gated.url}/ui{path}", cookie=cookie)
        assert status == 200, path
        assert "<script" not in body, path
        assert "<h1>" in body, path  # a page, whole
    _, _, model = fetch(f"{gated.url}/ui/models/{GROUP}/1", cookie=cookie)
    assert model.count("&lt;script&gt;window.pwned=1&lt;/script&gt;") == 2  # comment, by
    assert "&lt;b&gt;" in model
    status, _, missing = fetch(f"{gated.url}/ui/executions/{urllib.parse.quote(HOSTILE)}",
                               cookie=cookie)
    assert status == 404 and "<script" not in missing and "&lt;script&gt;" in missing


def test_a_form_without_its_token_is_refused(gated: Served) -> None:
    review = f"{gated.url}/ui/models/{GROUP}/2/review"
    approve = {"action": "approve", "by": "mallory", "comment": "no token"}
    assert fetch(review, approve)[0] == 403  # no session at all
    _, headers, _ = fetch(f"{gated.url}/ui")
    cookie = session_cookie(headers)
    assert fetch(review, approve, cookie)[0] == 403  # a session, no token
    _, _, other_page = fetch(f"{gated.url}/ui/models/{GROUP}/2")
    others = re.search(r'name="csrf" value="([^"]+)"', other_page)
    assert others is not None  # another session's token does not do either
    assert fetch(review, {**approve, "csrf": others.group(1)}, cookie)[0] == 403
    _, _, mine = fetch(f"{gated.url}/ui/models/{GROUP}/2", cookie=cookie)
    token = re.search(r'name="csrf" value="([^"]+)"', mine)
    assert token is not None  # the right token, from a page of another site
    status, _, _ = fetch(review, {**approve, "csrf": token.group(1)}, cookie,
                         {"Origin": "http://evil.example"})
    assert status == 403
    described = json.loads(gated.cli("models", "describe", "2", "--json").stdout)
    assert described["approval_status"] == "PendingManualApproval"
    assert all(h["by"] != "mallory" for h in described["history"])


def test_unknown_pages_and_refused_changes_say_why(gated: Served) -> None:
    _, headers, _ = fetch(f"{gated.url}/ui")
    cookie = session_cookie(headers)
    for path, why in [(f"/models/{GROUP}/99", "has no version 99"),
                      ("/endpoints/nowhere", "no endpoint 'nowhere'"),
                      ("/executions/nope", "no execution 'nope'"), ("/elsewhere", "no dashboard")]:
        status, _, body = fetch(f"{gated.url}/ui{path}", cookie=cookie)
        assert status == 404 and why in body.replace("&#x27;", "'"), path
    _, _, model = fetch(f"{gated.url}/ui/models/{GROUP}/1", cookie=cookie)
    token = re.search(r'name="csrf" value="([^"]+)"', model)
    assert token is not None and 'id="approve"' not in model  # approved: only Reject
    status, headers, _ = fetch(f"{gated.url}/ui/models/{GROUP}/1/review",
                               {"action": "approve", "by": "Ada", "csrf": token.group(1)}, cookie)
    assert status == 303 and headers["location"] == f"/ui/models/{GROUP}/1"
    notice = re.search(r"(custseg_ui_flash_\d+)=([^;]*)", headers["set-cookie"])
    assert notice is not None
    _, headers, page = fetch(f"{gated.url}{headers['location']}",
                             cookie=f"{cookie}; {notice.group(1)}={notice.group(2)}")
    assert 'class="notice error"' in page and "it cannot become Approved" in page
    assert f"{notice.group(1)}=;" in headers["set-cookie"]  # shown once


# -- in Chromium -----------------------------------------------------------------------------

def screenshot(browser: Any, tmp_path: Path, name: str) -> None:
    """Save a screenshot (and into $CUSTSEG_SCREENSHOTS, e.g. docs, when set)."""
    path = tmp_path / name
    browser.set_window_size(1280, 1100)
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.save_screenshot(str(path)) and path.stat().st_size > 10_000
    folder = os.environ.get("CUSTSEG_SCREENSHOTS")
    if folder:
        shutil.copy(path, REPO / folder / name)


def titled(browser: Any, prefix: str) -> None:
    """Wait for the page a click leads to (a click returns before the page loads)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 60).until(lambda d: d.title.startswith(prefix))


def notice(browser: Any) -> str:
    """The notice of the last action, once the page after the form has loaded."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    return str(WebDriverWait(browser, 60).until(
        lambda d: d.find_elements(By.ID, "notice"))[0].text)


def no_console_errors(browser: Any) -> None:
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []


@needs_chromium
def test_approving_from_the_page_switches_the_endpoint(gated: Served, browser: Any,
                                                       tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    assert invoke(gated) == (200, f"{GROUP}/1")
    browser.get(f"{gated.url}/ui")
    titled(browser, "Overview")
    assert browser.execute_script("return window.pwned") is None
    screenshot(browser, tmp_path, "ui-overview.png")
    browser.find_element(By.LINK_TEXT, "Models").click()
    titled(browser, "Models")
    browser.find_element(By.LINK_TEXT, f"{GROUP}/2").click()
    titled(browser, f"Model {GROUP}/2")
    assert "PendingManualApproval" in browser.find_element(By.TAG_NAME, "body").text
    browser.find_element(By.ID, "by").send_keys("Ada Lovelace")
    browser.find_element(By.ID, "comment").send_keys("segments read well")
    screenshot(browser, tmp_path, "ui-models.png")
    browser.find_element(By.ID, "approve").click()
    done = notice(browser)
    assert f"Model {GROUP}/2: PendingManualApproval -> Approved (by Ada Lovelace)" in done
    assert f"endpoint {ENDPOINT} ->" in done and "InService" in done
    browser.refresh()  # the notice is shown once
    assert not browser.find_elements(By.ID, "notice")
    described = json.loads(gated.cli("models", "describe", "2", "--json").stdout)
    assert described["history"][-1] | {"at": None} == {
        "from_status": "PendingManualApproval", "to_status": "Approved", "at": None,
        "by": "Ada Lovelace", "comment": "segments read well"}
    for _ in range(30):  # every worker serves version 2
        assert invoke(gated) == (200, f"{GROUP}/2")
    browser.find_element(By.LINK_TEXT, "Endpoints").click()
    browser.find_element(By.LINK_TEXT, ENDPOINT).click()
    assert browser.find_element(By.ID, "model-version").text == f"{GROUP}/2"
    time.sleep(1.2)
    browser.refresh()  # a second look: the rate over the time between them
    assert re.search(r"requests\n\d+\.\d\d/s", browser.find_element(By.ID, "traffic").text)
    assert "No monitoring results yet" in browser.find_element(By.ID, "drift").text
    screenshot(browser, tmp_path, "ui-endpoint.png")
    no_console_errors(browser)


@needs_chromium
def test_rollback_from_the_page(gated: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{gated.url}/ui/endpoints/{ENDPOINT}")
    assert browser.find_element(By.ID, "model-version").text == f"{GROUP}/2"
    browser.find_element(By.ID, "rollback").click()
    assert f"Endpoint {ENDPOINT}:" in notice(browser)
    assert browser.find_element(By.ID, "model-version").text == f"{GROUP}/1"
    assert {invoke(gated)[1] for _ in range(20)} == {f"{GROUP}/1"}


@needs_chromium
def test_the_execution_page_draws_the_graph_and_the_steps(gated: Served, browser: Any
                                                          ) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{gated.url}/ui/executions")
    tables = browser.find_elements(By.CSS_SELECTOR, "table.data")
    assert "Train → CreateModel → RegisterModel → DeployEndpoint" in tables[0].text
    rows = tables[1].find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == 2
    rows[0].find_element(By.TAG_NAME, "a").click()
    steps = browser.find_elements(By.CSS_SELECTOR, "#graph g.step")
    assert {s.get_attribute("data-step") for s in steps} == {
        "Train", "CreateModel", "RegisterModel", "DeployEndpoint"}
    statuses = {s.get_attribute("data-step"): s.get_attribute("data-status") for s in steps}
    assert statuses["DeployEndpoint"] == "Skipped"  # held back for approval
    assert "deploy.require_approval" in browser.find_element(By.TAG_NAME, "body").text
    no_console_errors(browser)


# -- behind an API key -----------------------------------------------------------------------

@pytest.fixture()
def keyed(tmp_path: Path) -> Iterator[Served]:
    served = make_served(tmp_path, endpoint={"api_key_env": "UI_TEST_KEY"})
    served.env = {"UI_TEST_KEY": KEY}
    assert served.cli("run").returncode == 0
    served.serve()
    try:
        yield served
    finally:
        served.stop()


def test_with_an_api_key_the_dashboard_needs_a_sign_in(keyed: Served) -> None:
    status, headers, _ = fetch(f"{keyed.url}/ui/models")
    assert status == 303 and headers["location"] == "/ui/login?next=%2Fui%2Fmodels"
    assert "set-cookie" not in headers
    status, headers, body = fetch(f"{keyed.url}/ui/login", {"key": "wrong", "next": "/ui"})
    assert status == 401 and "set-cookie" not in headers and "wrong API key" in body
    status, headers, _ = fetch(f"{keyed.url}/ui/login",
                               {"key": KEY, "next": "https://evil.example/"})
    assert status == 303 and headers["location"] == "/ui"  # never off the dashboard
    set_cookie = headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    assert KEY not in set_cookie
    cookie = session_cookie(headers)
    assert fetch(f"{keyed.url}/ui/models", cookie=cookie)[0] == 200
    forged = cookie[:-4] + ("0000" if not cookie.endswith("0000") else "1111")
    assert fetch(f"{keyed.url}/ui/models", cookie=forged)[0] == 303
    assert fetch(f"{keyed.url}/ui/endpoints/{ENDPOINT}/rollback", {"csrf": "x"})[0] == 403


@needs_chromium
def test_signing_in_with_the_browser(keyed: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{keyed.url}/ui/endpoints")
    titled(browser, "Sign in")
    browser.find_element(By.ID, "key").send_keys("not the key")
    browser.find_element(By.ID, "sign-in").click()
    assert "wrong API key" in notice(browser)
    browser.find_element(By.ID, "key").send_keys(KEY)
    browser.find_element(By.ID, "sign-in").click()
    titled(browser, "Endpoints")
    assert browser.find_element(By.LINK_TEXT, ENDPOINT)
    browser.find_element(By.CSS_SELECTOR, "nav button").click()  # sign out
    titled(browser, "Sign in")
    browser.get(f"{keyed.url}/ui")
    titled(browser, "Sign in")


# -- the review form's rules, on a real store ------------------------------------------------

def test_a_review_needs_a_name_and_a_decision(tmp_path: Path) -> None:
    """Without the server's config (`custseg serve --store`) a decision is recorded and
    nothing deployed; a missing name or decision, or a change the registry does not
    allow, is refused with a sentence."""
    from custseg.config import load_config
    from custseg.errors import RegistryError
    from custseg.ui.models import review_version

    served = make_served(tmp_path, deploy={"require_approval": True})
    assert served.cli("run").returncode == 0
    store = load_config(served.config).open_store(existing=True)
    for fields, refusal in [({"action": "approve", "by": "  "}, "say who you are"),
                            ({"action": "approve", "by": "x" * 101}, "say who you are"),
                            ({"action": "deploy", "by": "Ada"}, "choose Approve or Reject"),
                            ({"by": "Ada"}, "choose Approve or Reject")]:
        with pytest.raises(RegistryError, match=refusal):
            review_version(store, None, GROUP, 1, fields)
    done = review_version(store, None, GROUP, 1, {"action": "reject", "by": " Ada\n Lovelace ",
                                                  "comment": "  too coarse  "})
    assert done == f"Model {GROUP}/1: PendingManualApproval -> Rejected (by Ada Lovelace)"
    with pytest.raises(RegistryError, match="cannot become Rejected"):
        review_version(store, None, GROUP, 1, {"action": "reject", "by": "Ada"})
    history = json.loads(served.cli("models", "describe", "1", "--json").stdout)["history"]
    assert (history[-1]["by"], history[-1]["comment"]) == ("Ada Lovelace", "too coarse")
    assert json.loads(served.cli("endpoints", "list", "--json").stdout) == []


def test_the_drift_section_shows_the_monitors_results_escaped() -> None:
    from custseg.ui.drift import drift_section

    assert "No monitoring results yet" in drift_section(None, ENDPOINT)
    assert "No monitoring results yet" in drift_section([], ENDPOINT)
    results = [
        {"created_at": "2026-12-03T08:00:00+00:00", "model_version": f"{GROUP}/2",
         "source": "capture 24h", "records": 12_345, "drift": True, "max_psi": 0.31,
         "segment_psi": 0.02, "far_share": 0.12, "alerts": [f"Income PSI 0.31 {HOSTILE}"]},
        {"created_at": "2026-12-02T08:00:00+00:00", "model_version": f"{GROUP}/1",
         "source": "data.csv", "records": 900, "drift": False, "max_psi": None,
         "segment_psi": None, "far_share": None, "alerts": []},
    ]
    section = drift_section(results, ENDPOINT)
    assert "<script" not in section and "&lt;script&gt;" in section
    rows = re.findall(r"<tr><td>(.*?)</td></tr>", section)
    assert len(rows) == 2
    assert "12,345" in rows[0] and "0.310" in rows[0] and ">drift<" in rows[0]
    assert ">ok<" in rows[1] and "data.csv" in rows[1]
