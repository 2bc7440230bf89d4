"""Issue 6: the dashboard in a real headless browser (Debian's chromium, driven by
Selenium through Debian's chromedriver; deploy/install-browser.sh installs both and
tests/run.sh calls it). A real 2-node cluster; the page must show both members in its
partition grid, a user written through the API must appear in its live feed, and it
must follow the node it came from through a restart (reconnect, resume, no gap).
Screenshots go to this test's artifacts folder."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.chrome import missing, open_chromium
from tests.support.feed import put_user
from tests.support.procs import wait_ready, wait_stable

PARTITIONS = 10


def _wait(driver: WebDriver, what: str, check: Any, seconds: float = 30) -> Any:
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.2).until(check)
    except Exception as exc:
        raise AssertionError(f"dashboard: {what} not seen within {seconds}s") from exc


def grid_owners(driver: WebDriver) -> list[str]:
    cells = driver.find_elements(By.CSS_SELECTOR, "#grid .cell")
    return [c.get_attribute("data-owner") or "" for c in cells]


def feed_text(driver: WebDriver) -> str:
    return driver.find_element(By.ID, "feed").text


def text_of(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


async def test_dashboard_shows_the_cluster_and_its_live_feed(make_node, client, artifacts,
                                                             tmp_path):
    why = missing()
    if why:
        pytest.fail(why, pytrace=False)  # never a silent skip
    a, b = make_node(), make_node()
    await wait_stable(client, [a, b], PARTITIONS)
    tag = uuid.uuid4().hex[:8]

    def run(fn: Any, *args: Any) -> Any:
        return trio.to_thread.run_sync(fn, *args)

    with open_chromium(tmp_path / "profile", artifacts / "chromedriver.log") as driver:
        try:
            await run(driver.get, f"{a.base}/")
            await run(_wait, driver, "a live feed", lambda d: "feed: live via " + a.url
                      in text_of(d, "feed-status"))
            await run(_wait, driver, "both members owning partitions", lambda d: (
                len(grid_owners(d)) == PARTITIONS and set(grid_owners(d)) == {a.url, b.url}))
            rows = await run(driver.find_elements, By.CSS_SELECTOR, "#members tbody tr")
            assert {r.get_attribute("data-url") for r in rows} == {a.url, b.url}
            await run(_wait, driver, "both members ready", lambda d: [
                r.get_attribute("data-status")
                for r in d.find_elements(By.CSS_SELECTOR, "#members tbody tr")
            ] == ["ready", "ready"])

            # a write through the API (via the other node) shows up in the page's feed
            first = await put_user(client, b.base, f"ada-{tag}@example.com", f"Ada {tag}")
            await run(_wait, driver, "the new user in the feed", lambda d: (
                first.key in feed_text(d) and f"Ada {tag}" in feed_text(d)))
            assert f"{first.partition}@{first.offset}" in await run(feed_text, driver)
            await run(driver.save_screenshot, str(artifacts / "dashboard.png"))

            # the node the page came from restarts; a write lands meanwhile (via b)
            a.term()
            assert await a.wait_exit() == 0
            await run(_wait, driver, "the feed noticing the node went away",
                      lambda d: "reconnecting" in text_of(d, "feed-status"))
            missed = await put_user(client, b.base, f"bob-{tag}@example.com", f"Bob {tag}")
            a.start()
            await wait_ready(client, a)
            await run(_wait, driver, "the feed resumed", lambda d: (
                "(resumed)" in text_of(d, "feed-status")), 60)
            after = await put_user(client, a.base, f"cy-{tag}@example.com", f"Cy {tag}")
            await run(_wait, driver, "the missed and the new user in the feed", lambda d: (
                missed.key in feed_text(d) and after.key in feed_text(d)))
            await wait_stable(client, [a, b], PARTITIONS)
            await run(_wait, driver, "both members again", lambda d: (
                set(grid_owners(d)) == {a.url, b.url}))
            # resumed exactly: each change once, the missed one included
            rows = await run(driver.find_elements, By.CSS_SELECTOR, "#feed tbody tr")
            keys = [r.get_attribute("data-key") for r in rows]
            written = [first, missed, after]
            assert set(keys) == {w.key for w in written}, keys
            assert len(keys) == len(written) + sum(w.retried for w in written), keys
            positions = await run(driver.execute_script,
                                  "return window.kstateFeed.positions")
            assert int(positions[str(after.partition)]) == after.offset + 1
            await run(driver.save_screenshot, str(artifacts / "dashboard-after-restart.png"))
        finally:
            _save_console(driver, artifacts / "console.json")


def _save_console(driver: WebDriver, path: Path) -> None:
    try:
        path.write_text(json.dumps(driver.get_log("browser"), indent=1))
    except Exception as exc:  # the browser may be gone; the log is a courtesy
        path.write_text(json.dumps({"error": repr(exc)}))
