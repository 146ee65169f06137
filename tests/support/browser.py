"""A real browser for the pages' tests: Debian's chromium, headless, through Selenium and
Debian's chromedriver (`apt-get install chromium chromium-driver`; .ci/run installs them).

    def test_page(browser):                      # the fixture (tests/conftest.py registers it)
        browser.get("http://127.0.0.1:PORT/page")
        assert not console_errors(browser)

or `with headless_chromium(tmp_dir) as driver:` where a fixture does not fit. The paths are
given, so Selenium Manager never tries to download a driver or a browser. Without chromium
the tests skip on a workstation and fail with CI=true, as the Docker tests do.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.support.steps import IN_CI

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PAGE_LOAD_TIMEOUT = 30.0  # s


def missing_browser(reason: str) -> None:
    """Skip with a reason on a workstation; fail when CI=true: CI must not pass by skipping."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing browser fails the run)", pytrace=False)
    pytest.skip(reason)


def chromium_options(user_data_dir: Path) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu",
        # Nothing of its own on the network: the page's requests are the only ones.
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={user_data_dir}", "--window-size=1280,1024",
    ):
        options.add_argument(argument)
    # The page's console messages, read with driver.get_log("browser").
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@contextlib.contextmanager
def headless_chromium(user_data_dir: Path) -> Iterator[webdriver.Chrome]:
    """A headless chromium with a fresh profile in `user_data_dir`; quit when the block ends."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        missing_browser(f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium "
                        "chromium-driver)")
    user_data_dir.mkdir(parents=True, exist_ok=True)
    driver = webdriver.Chrome(options=chromium_options(user_data_dir),
                              service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(user_data_dir, ignore_errors=True)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Debian's chromium, headless, with a fresh profile, its console messages recorded."""
    with headless_chromium(tmp_path / "chromium-profile") as driver:
        yield driver


def console_errors(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The page's console messages of level SEVERE so far (failed loads, script errors)."""
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


def resources_loaded(driver: webdriver.Chrome) -> list[str]:
    """The URL of every resource the page has fetched so far (the Resource Timing API)."""
    names = driver.execute_script(
        "return performance.getEntriesByType('resource').map(entry => entry.name)")
    return [str(name) for name in names]
