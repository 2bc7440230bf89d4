"""Debian's headless Chromium driven by Selenium through Debian's chromedriver.

The browser and the driver come from deploy/install-browser.sh (apt: chromium,
chromium-driver), which tests/run.sh calls before pytest. Both paths are given to
Selenium explicitly, so Selenium Manager never runs and nothing is downloaded.
Selenium's API is synchronous: call it from a worker thread (``trio.to_thread``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = os.environ.get("KSTATE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("KSTATE_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: run deploy/install-browser.sh (tests/run.sh does)"
    return None


@contextmanager
def open_chromium(profile: Path, log: Path) -> Iterator[webdriver.Chrome]:
    """A fresh headless Chromium (profile in ``profile``), quit on exit; chromedriver's
    log goes to ``log``."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(log))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()
