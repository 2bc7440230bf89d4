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
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.chrome import missing, open_chromium
from tests.support.feed import put_user
from tools.procs import wait_ready, wait_stable

PARTITIONS = 10


def _wait(driver: WebDriver, what: str, check: Any, seconds: float = 30) -> Any:
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.2).until(check)
    except TimeoutException as exc:
        raise AssertionError(f"dashboard: {what} not seen within {seconds}s") from exc


# The page re-renders its tables every second: read them in one script call each, never
# through element handles that a re-render makes stale.
def attrs(driver: WebDriver, selector: str, name: str) -> list[str]:
    return list(driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".map(e => e.getAttribute(arguments[1]) || '')", selector, name))


def grid_owners(driver: WebDriver) -> list[str]:
    return attrs(driver, "#grid .cell", "data-owner")


def feed_text(driver: WebDriver) -> str:
    return str(driver.execute_script("return document.getElementById('feed').innerText"))


def text_of(driver: WebDriver, element_id: str) -> str:
    return str(driver.execute_script(
        "return document.getElementById(arguments[0]).innerText", element_id))


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
            urls = await run(attrs, driver, "#members tbody tr", "data-url")
            assert sorted(urls) == sorted([a.url, b.url])
            await run(_wait, driver, "both members ready", lambda d: attrs(
                d, "#members tbody tr", "data-status") == ["ready", "ready"])

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
            keys = await run(attrs, driver, "#feed tbody tr", "data-key")
            where = await run(driver.execute_script, (
                "return Array.from(document.querySelectorAll('#feed tbody tr td:nth-child(2)'))"
                ".map(e => e.innerText)"))
            written = [first, missed, after]
            assert set(keys) == {w.key for w in written}, keys
            assert len(set(where)) == len(where), where  # no change shown twice
            for w in written:
                assert f"{w.partition}@{w.offset}" in where, (w, where)
            # (a write answered 503 may have left one more record of its key behind)
            assert len(keys) <= len(written) + sum(w.retried for w in written), keys
            positions = await run(driver.execute_script,
                                  "return window.kstateFeed.positions")
            assert int(positions[str(after.partition)]) == after.offset + 1
            await run(driver.save_screenshot, str(artifacts / "dashboard-after-restart.png"))
        except BaseException:
            driver.save_screenshot(str(artifacts / "failure.png"))
            (artifacts / "failure.txt").write_text(driver.find_element(By.TAG_NAME, "body").text)
            raise
        finally:
            _save_console(driver, artifacts / "console.json")


def _save_console(driver: WebDriver, path: Path) -> None:
    try:
        path.write_text(json.dumps(driver.get_log("browser"), indent=1))
    except Exception as exc:  # the browser may be gone; the log is a courtesy
        path.write_text(json.dumps({"error": repr(exc)}))
