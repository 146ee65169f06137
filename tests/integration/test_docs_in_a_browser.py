from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.browser import console_errors, resources_loaded
from tests.support.processes import Process

pytestmark = pytest.mark.integration

StartService = Callable[..., Process]
RENDER_TIMEOUT = 20.0  # s: Swagger UI's bundle is 1.5 MB of script for a headless browser
# ReDoc's bundle shows its maker's logo at the foot of the menu, from the maker's CDN, and
# hides it when that fails (as offline): the one address outside the service it asks for.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.mark.parametrize(("module", "operations"), [
    ("prod_service", {"GET /products", "GET /products/{prodNo}"}),
    ("front_service", {"GET /product-detail/{prodNo}"}),
])
def test_swagger_ui_renders_the_operations_offline(
    start_service: StartService, browser: webdriver.Chrome, module: str, operations: set[str],
) -> None:
    """In Debian's headless chromium, with nothing but the service to load from, /docs
    renders the service's operations; every resource came from the service, and the page
    logged no error (a missing script or style would)."""
    service = start_service(module)

    browser.get(f"{service.url}/docs")
    blocks = WebDriverWait(browser, RENDER_TIMEOUT).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, ".opblock-summary"))

    shown = {" ".join(block.text.split()[:2]) for block in blocks}
    assert operations <= shown
    assert "GET /health" in shown
    assert {urlsplit(url).netloc for url in resources_loaded(browser)} == {
        f"127.0.0.1:{service.port}"}
    assert console_errors(browser) == []


def test_redoc_renders_the_operations_offline(
    start_service: StartService, browser: webdriver.Chrome,
) -> None:
    """/redoc renders the product service's operations from the packaged ReDoc: everything it
    needs comes from the service, and nothing fails but ReDoc's own logo from its maker's
    CDN (which it hides when it cannot load)."""
    service = start_service("prod_service")

    browser.get(f"{service.url}/redoc")
    WebDriverWait(browser, RENDER_TIMEOUT).until(
        lambda driver: "/products/{prodNo}" in driver.find_element(By.TAG_NAME, "body").text)

    resources = resources_loaded(browser)
    assert f"{service.url}/openapi.json" in resources
    assert {url for url in resources if urlsplit(url).netloc != f"127.0.0.1:{service.port}"
            } <= {REDOC_LOGO}
    assert [error for error in console_errors(browser) if REDOC_LOGO not in error["message"]
            ] == []
