"""The auditor's browser, in a real headless Chromium driven by Selenium (Debian's chromium and
chromium-driver): search by a number, open the call, play its recording and seek in it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from archiver.simulator import Simulator
from tests.helpers import SINCE, UNTIL, Browse, backfill, config_for, need_os_tools, write_config

pytestmark = pytest.mark.anyio

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


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


async def test_an_auditor_finds_a_call_by_number_opens_it_and_seeks_in_its_recording(
    sim: Simulator, tmp_path: Path
) -> None:
    need_os_tools("a real browser", "chromium", "chromedriver")
    root = tmp_path / "archive"
    await backfill(config_for(sim, f"file://{root}", tmp_path))
    call = next(
        c
        for c in sim.dataset.calls_between(SINCE, UNTIL, sim.now())
        if c.serves_recording and c.duration >= 4 and c.source.startswith("0") and len(c.source) == 10
    )
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
