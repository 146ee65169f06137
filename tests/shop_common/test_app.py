from collections.abc import Callable
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from coupon_service.app import create_app as create_coupon_app
from coupon_service.settings import CouponSettings
from front_service.app import create_app as create_front_app
from front_service.settings import FrontSettings
from prod_service.app import create_app as create_prod_app
from prod_service.settings import ProdSettings

APPS: dict[str, Callable[[], FastAPI]] = {
    "prod": lambda: create_prod_app(ProdSettings(instance="prod-test")),
    "coupon": lambda: create_coupon_app(CouponSettings(instance="coupon-test")),
    # No upstreams here: no warm-up (it would look prod.api up before the app starts).
    "front": lambda: create_front_app(FrontSettings(instance="front-test",
                                                    upstream_warmup_seconds=0)),
}


class References(HTMLParser):
    """Every URL a page names in an attribute (src, href, spec-url, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs
                      if value and name in ("src", "href", "spec-url", "action", "data")]


@pytest.mark.parametrize("service", APPS)
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_everything_from_the_service_itself(service: str, page: str) -> None:
    """/docs and /redoc name no other host (no CDN): every script, style and icon they load
    is a path of the service, and each of those answers 200 with its content."""
    with TestClient(APPS[service]()) as client:
        response = client.get(page)
        assert response.status_code == 200
        assert "http://" not in response.text
        assert "https://" not in response.text
        references = References()
        references.feed(response.text)
        assets = [url for url in references.urls if url != "/openapi.json"]
        assert any(url.endswith(".js") for url in assets)
        for url in references.urls:
            parts = urlsplit(url)
            assert not parts.scheme, url
            assert not parts.netloc, url
            assert url.startswith("/"), url
        for url in assets:
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 100, url
