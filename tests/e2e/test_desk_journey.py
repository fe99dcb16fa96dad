"""Two auditors of two scopes at the desk, in a real headless Chromium: alice (hq) opens the
calendar, a day, a call, and plays it; bob (the qa group: danang) sees only his source. The
pages are drawn by the desk's one stylesheet under its Content-Security-Policy, read on a laptop
and on a phone, and screenshots of each are saved into the test output
(``$ARCHIVER_TEST_OUTPUT``, default ``test-output/``, under ``screenshots/``). A page on another
site cannot make alice's browser fetch a recording."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from archiver.simulator import Dataset, SimCall, Simulator
from tests.desk import PASSWORD, htpasswd, log_lines, trail
from tests.e2e.test_browse import chromium, open_and_play
from tests.helpers import SINCE, UNTIL, Browse, TinyServer, backfill, config_for, need_os_tools, run_cli, write_config

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
LAPTOP, PHONE = (1280, 900), (390, 844)


def screenshots() -> Path:
    """Where the screenshots go: the test output, kept after the run."""
    folder = Path(os.environ.get("ARCHIVER_TEST_OUTPUT", ROOT / "test-output")) / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def snap(driver: WebDriver, name: str, size: tuple[int, int]) -> Path:
    """A screenshot of the whole page at *size* (its width; the height grows to the page's)."""
    driver.set_window_size(*size)
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(size[0], min(max(size[1], height + 120), 6000))
    path = screenshots() / f"{name}.png"
    assert driver.save_screenshot(str(path)), path
    driver.set_window_size(*size)
    return path


@pytest.fixture
def danang() -> Iterator[Simulator]:
    with Simulator(Dataset(seed=11, calls_per_day=30, max_duration=6), seed=11) as server:
        yield server


def recorded(sim: Simulator) -> list[SimCall]:
    return [c for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.serves_recording and c.duration >= 3]


def signed_in(url: str, user: str) -> str:
    return url.replace("://", f"://{user}:{PASSWORD}@")


def css(driver: WebDriver, selector: str, prop: str) -> str:
    return str(driver.execute_script(f"return getComputedStyle(document.querySelector({selector!r})).{prop}"))


async def test_two_auditors_of_two_scopes_at_the_desk(sim: Simulator, danang: Simulator, tmp_path: Path) -> None:
    need_os_tools("a real browser", "chromium", "chromedriver")
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}/hq", tmp_path / "hq"))
    await backfill(config_for(danang, f"file://{root}/danang", tmp_path / "danang"))
    users = htpasswd(tmp_path / "users", {"alice": PASSWORD, "bob": PASSWORD}, groups={"bob": "qa"})
    config = write_config(
        tmp_path / "auditor.yaml",
        {
            "sources": [{"name": "hq"}, {"name": "danang"}],
            "storage": {"url": f"file://{root}"},
            "browse": {"users_file": str(users), "scopes": {"alice": ["hq"], "group:qa": ["danang"]}},
        },
    )
    hq_call, dn_call = recorded(sim)[0], recorded(danang)[0]
    log = tmp_path / "browse.log"
    server = Browse(config, log)
    base = server.url.rstrip("/")
    alice = chromium(tmp_path / "alice")
    bob = chromium(tmp_path / "bob")
    try:
        wait = WebDriverWait(alice, 30)
        alice.set_window_size(*LAPTOP)
        alice.get(signed_in(server.url, "alice") + "days")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#strip"))
        assert "Seal chain head" in alice.find_element(By.ID, "strip").text
        assert alice.execute_script("return document.scripts.length") == 0
        assert css(alice, "a.d.sealed", "backgroundColor") == "rgb(205, 235, 211)"  # the stylesheet ran, by its hash
        assert "danang" not in alice.page_source
        snap(alice, "calendar", LAPTOP)
        snap(alice, "calendar-phone", PHONE)
        assert alice.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        months = alice.find_elements(By.CSS_SELECTOR, ".month")
        assert len({m.location["y"] for m in months}) == len(months)  # one month per row on a phone
        alice.set_window_size(*LAPTOP)

        alice.find_element(By.CSS_SELECTOR, f'a.d[href^="/days/{hq_call.start:%Y-%m-%d}"]').click()
        wait.until(lambda d: d.find_elements(By.ID, "summary"))
        assert "closed, every manifest sealed" in alice.find_element(By.ID, "summary").text
        snap(alice, "day", LAPTOP)

        open_and_play(alice, "table.calls a", hq_call.uuid)
        snap(alice, "call", LAPTOP)

        alice.get(f"{base}/calls/{dn_call.uuid}")
        assert "Not found" in alice.find_element(By.TAG_NAME, "h1").text

        bob.set_window_size(*LAPTOP)
        bob.get(signed_in(server.url, "bob") + "days")
        WebDriverWait(bob, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#strip"))
        assert bob.find_element(By.CSS_SELECTOR, "p.who").text == "Signed in as bob; sees danang (group:qa)"
        assert bob.find_element(By.TAG_NAME, "h1").text.endswith(": danang")
        snap(bob, "scoped-user", LAPTOP)
        bob.get(f"{base}/?number={dn_call.destination}")
        WebDriverWait(bob, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "p.count"))
        assert dn_call.uuid in bob.page_source
        assert "hq" not in bob.find_element(By.CSS_SELECTOR, "table.calls").text
        bob.get(f"{base}/calls/{hq_call.uuid}")
        assert "Not found" in bob.find_element(By.TAG_NAME, "h1").text

        # A page on another site (localhost is another site than 127.0.0.1) embeds alice's
        # recordings and a bundle: her browser sends her saved login, the desk refuses.
        attack = (
            f'<audio autoplay muted src="{base}/calls/{hq_call.uuid}/audio"></audio>'
            f'<img src="{base}/calls/{hq_call.uuid}/evidence.zip">'
            f'<img src="{base}/calls/{hq_call.uuid}">'
        ).encode()

        def page(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(200)
            handler.send_header("Content-Type", "text/html")
            handler.send_header("Content-Length", str(len(attack)))
            handler.end_headers()
            handler.wfile.write(attack)

        with TinyServer(page) as elsewhere:
            alice.get(elsewhere.url.replace("127.0.0.1", "localhost") + "/attack.html")
            WebDriverWait(alice, 30).until(lambda _: len(log_lines(log, "browse.cross_site_refused")) >= 3)
    finally:
        alice.quit()
        bob.quit()
        assert server.close() == 0
    events = trail(root)
    assert [(e["user"], e["action"], e["call_id"], e["source"]) for e in events] == [
        ("alice", "view", hq_call.uuid, "hq"),
        ("alice", "play", hq_call.uuid, "hq"),
    ], events  # nothing of the attack, nothing of bob's 404s
    as_bob = run_cli("access", "-c", str(config), "--as", "bob", "--json")
    assert json.loads(as_bob.stdout) == []
    for name in ("calendar", "calendar-phone", "day", "call", "scoped-user"):
        assert (screenshots() / f"{name}.png").stat().st_size > 10_000
