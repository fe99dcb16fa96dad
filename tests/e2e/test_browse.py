"""The auditor's browser, in a real headless Chromium driven by Selenium (Debian's chromium and
chromium-driver): search by a number, open the call, play its recording and seek in it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import bcrypt
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from archiver.simulator import SimCall, Simulator
from tests.helpers import (
    SINCE,
    UNTIL,
    Browse,
    Bucket,
    backfill,
    config_for,
    need_os_tools,
    run_cli,
    write_config,
)

pytestmark = pytest.mark.anyio

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
PASSWORD = "Audit0r-2026"


def chromium(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or "chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=DRIVER or "chromedriver"))


def open_and_play(driver: webdriver.Chrome, links: str, call_id: str) -> None:
    """Click the link to *call_id* among the *links* (a CSS selector), see the call verified, and
    play its recording (muted) past its first fifth of a second."""
    wait = WebDriverWait(driver, 30)
    [link] = [a for a in driver.find_elements(By.CSS_SELECTOR, links) if call_id in (a.get_attribute("href") or "")]
    link.click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "p.verdict"))
    assert "Verified now" in driver.find_element(By.CSS_SELECTOR, "p.verdict").text
    audio = driver.find_element(By.TAG_NAME, "audio")
    driver.execute_script("arguments[0].muted = true; arguments[0].play()", audio)
    wait.until(lambda d: d.execute_script("return arguments[0].currentTime", audio) > 0.2)


async def archived_call(sim: Simulator, tmp_path: Path, root: Path) -> SimCall:
    """The simulator's days archived into *root*; a recorded call of four seconds or more from a
    mobile number written 0…, to be found as +84…."""
    await backfill(config_for(sim, f"file://{root}", tmp_path))
    return next(
        c
        for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now())
        if c.serves_recording and c.duration >= 4 and c.source.startswith("0") and len(c.source) == 10
    )


async def test_an_auditor_finds_a_call_by_number_opens_it_and_seeks_in_its_recording(
    sim: Simulator, tmp_path: Path
) -> None:
    need_os_tools("a real browser", "chromium", "chromedriver")
    root = tmp_path / "archive"
    call = await archived_call(sim, tmp_path, root)
    auditor = write_config(tmp_path / "auditor.yaml", {"storage": {"url": f"file://{root}"}})
    log = tmp_path / "browse.log"
    server = Browse(auditor, log)
    driver = chromium(tmp_path / "profile")
    try:
        wait = WebDriverWait(driver, 30)
        driver.get(server.url)
        field = driver.find_element(By.NAME, "number")
        field.send_keys(f"+84 {call.source[1:4]} {call.source[4:7]} {call.source[7:]}")  # stored as 0…
        field.submit()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "table.calls tbody tr"))
        links = driver.find_elements(By.CSS_SELECTOR, "table.calls tbody tr td a")
        [link] = [a for a in links if call.uuid in (a.get_attribute("href") or "")]
        link.click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "p.verdict"))
        assert "Verified now" in driver.find_element(By.CSS_SELECTOR, "p.verdict").text
        assert call.uuid in driver.title
        audio = driver.find_element(By.TAG_NAME, "audio")
        wait.until(lambda d: d.execute_script("return arguments[0].readyState", audio) >= 1)
        duration = driver.execute_script("return arguments[0].duration", audio)
        assert duration == pytest.approx(call.duration, abs=0.1)
        target = duration * 0.75
        driver.execute_script("arguments[0].currentTime = arguments[1]", audio, target)
        wait.until(lambda d: not d.execute_script("return arguments[0].seeking", audio))
        assert driver.execute_script("return arguments[0].currentTime", audio) == pytest.approx(target, abs=0.2)
        assert driver.execute_script("return arguments[0].error", audio) is None
        assert driver.execute_script("return document.scripts.length") == 0
    finally:
        driver.quit()
        assert server.close() == 0
    sent = [json.loads(line) for line in log.read_text().splitlines() if '"browse.sent"' in line]
    audio_key = f"{call.start:%Y/%m/%d}/{call.uuid}.wav"
    assert any(e["key"] == audio_key and e["status"] == 206 for e in sent), sent  # the player asked for ranges


async def test_an_auditor_signs_in_plays_a_call_and_downloads_its_bundle_under_their_name(
    sim: Simulator, tmp_path: Path
) -> None:
    """browse.users_file: the auditor signs in, finds the call by +84…, plays it and downloads its
    evidence bundle; the access trail left in the archive shows each step under their name."""
    need_os_tools("a real browser", "chromium", "chromedriver")
    root = tmp_path / "archive"
    call = await archived_call(sim, tmp_path, root)
    users = tmp_path / "users"
    users.write_text(f"alice:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n")
    auditor = write_config(
        tmp_path / "auditor.yaml", {"storage": {"url": f"file://{root}"}, "browse": {"users_file": str(users)}}
    )
    server = Browse(auditor, tmp_path / "browse.log")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = chromium(tmp_path / "profile")
    try:
        driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        wait = WebDriverWait(driver, 30)
        driver.get(server.url.replace("http://", f"http://alice:{PASSWORD}@"))  # the Basic login
        field = driver.find_element(By.NAME, "number")
        field.send_keys(f"+84{call.source[1:]}")
        field.submit()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "table.calls tbody tr"))
        open_and_play(driver, "table.calls tbody tr td a", call.uuid)
        driver.find_element(By.ID, "evidence").click()
        wait.until(lambda _: [p for p in downloads.iterdir() if p.suffix == ".zip"])
    finally:
        driver.quit()
        assert server.close() == 0  # SIGTERM: the trail is written on the way out
    exported = tmp_path / "export.zip"
    assert run_cli("export", "-c", str(auditor), call.uuid, "--out", str(exported)).returncode == 0
    [bundle] = [p for p in downloads.iterdir() if p.suffix == ".zip"]
    assert bundle.read_bytes() == exported.read_bytes()
    trail = run_cli("access", "-c", str(auditor), "--user", "alice", "--json")
    assert trail.returncode == 0, trail.stderr
    steps = [(e["action"], e["call_id"]) for e in json.loads(trail.stdout)]
    assert steps == [("view", call.uuid), ("play", call.uuid), ("evidence", call.uuid)], steps


async def test_the_call_page_says_erased_or_in_cold_storage_instead_of_a_player(
    sim: Simulator, tmp_path: Path, bucket: Bucket
) -> None:
    """Chromium shows the erasure's notice and the cold-storage hint where the player would be."""
    need_os_tools("a real browser", "chromium", "chromedriver")
    storage = {"url": bucket.url, "endpoint_url": bucket.endpoint, "storage_class": "GLACIER"}
    await backfill(config_for(sim, bucket.url, tmp_path, endpoint=bucket.endpoint, storage=storage))
    auditor = write_config(tmp_path / "auditor.yaml", {"storage": storage})
    cold, erased = [c.uuid for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now()) if c.serves_recording][:2]
    done = run_cli("erase", "-c", str(auditor), erased, "--reason", "DSR-2026-0042")
    assert done.returncode == 0, done.stderr
    server = Browse(auditor, tmp_path / "browse.log")
    driver = chromium(tmp_path / "profile")
    try:
        driver.get(f"{server.url.rstrip('/')}/calls/{erased}")
        notice = driver.find_element(By.ID, "erased").text
        assert "DSR-2026-0042" in notice
        assert f"{erased}.wav" in notice
        assert driver.find_elements(By.TAG_NAME, "audio") == []
        driver.get(f"{server.url.rstrip('/')}/calls/{cold}")
        hint = driver.find_element(By.ID, "cold").text
        assert "in cold storage" in hint
        assert f"archiver restore -c CONFIG {cold}" in hint
        assert driver.find_elements(By.TAG_NAME, "audio") == []
    finally:
        driver.quit()
        server.close()
