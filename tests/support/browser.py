"""A real browser for the pages' tests: Debian's chromium, headless, through Selenium and
Debian's chromedriver (`apt-get install chromium chromium-driver`; .ci/run installs them).

    def test_page(browser):                      # the fixture (tests/conftest.py registers it)
        browser.get("http://127.0.0.1:PORT/page")
        assert not console_errors(browser)

or `with chromium() as driver:` (a fresh profile of its own) where a fixture does not fit, e.g.
in a module-scoped fixture or in the middle of a swarm test. The paths are
given, so Selenium Manager never tries to download a driver or a browser. Without chromium
the tests skip on a workstation and fail with CI=true, as the Docker tests do.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
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


def chromium_options(user_data_dir: Path, width: int = 1280,
                     height: int = 1024) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu",
        # Nothing of its own on the network: the page's requests are the only ones.
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={user_data_dir}", f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    # The page's console messages, read with driver.get_log("browser").
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@contextlib.contextmanager
def headless_chromium(user_data_dir: Path, width: int = 1280,
                      height: int = 1024) -> Iterator[webdriver.Chrome]:
    """A headless chromium with a fresh profile in `user_data_dir`; quit when the block ends."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        missing_browser(f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium "
                        "chromium-driver)")
    user_data_dir.mkdir(parents=True, exist_ok=True)
    driver = webdriver.Chrome(options=chromium_options(user_data_dir, width, height),
                              service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(user_data_dir, ignore_errors=True)


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1300) -> Iterator[webdriver.Chrome]:
    """headless_chromium with a profile in a temporary directory of its own."""
    with tempfile.TemporaryDirectory(prefix="shop-chromium-") as profile, \
            headless_chromium(Path(profile), width, height) as driver:
        yield driver


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


def read_all(driver: webdriver.Chrome, selector: str) -> list[dict[str, str]]:
    """Attributes and text of every element matching `selector`, read in one script call:
    the console's page redraws its chart several times a second, so an element found by one
    WebDriver call may be gone by the next."""
    found: list[dict[str, str]] = driver.execute_script(
        """return Array.from(document.querySelectorAll(arguments[0]), (e) => {
             const out = {text: e.textContent};
             for (const a of e.attributes) out[a.name] = a.value;
             return out;
           });""", selector)
    return found
