"""Debian's chromium, headless, through Selenium and Debian's chromedriver: nothing is
downloaded (with the driver's path given, Selenium Manager stays out of it). Without them a
test skips on a workstation and fails in CI (CI=true): `apt-get install chromium
chromium-driver` (.ci/run does)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.steps import IN_CI

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def missing_browser(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing browser fails the run)", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1300) -> Iterator[Any]:
    """A headless chromium WebDriver with a fresh profile; its console log is kept."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        missing_browser("Debian's chromium and chromium-driver are not installed")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing_browser("selenium is not installed (pip install -e '.[dev]')")
    with tempfile.TemporaryDirectory(prefix="console-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                         f"--window-size={width},{height}"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def console_errors(driver: Any) -> list[str]:
    """What the page logged at SEVERE level (script errors, CSP violations, failed loads)."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE"]


def read_all(driver: Any, selector: str) -> list[dict[str, str]]:
    """Attributes and text of every element matching `selector`, read in one script call:
    the console's page redraws its chart several times a second, so an element found by one
    WebDriver call may be gone by the next."""
    return driver.execute_script(
        """return Array.from(document.querySelectorAll(arguments[0]), (e) => {
             const out = {text: e.textContent};
             for (const a of e.attributes) out[a.name] = a.value;
             return out;
           });""", selector)
