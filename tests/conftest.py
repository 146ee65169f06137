import socket
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from coupon_service.app import create_app as create_coupon_app
from coupon_service.settings import CouponSettings
from front_service.app import create_app as create_front_app
from front_service.settings import FrontSettings
from prod_service.app import create_app as create_prod_app
from prod_service.settings import ProdSettings
from tests.support.browser import browser  # noqa: F401 - the fixture, for every test
from tests.support.upstreams import Upstreams, front_settings_for


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The three-node cluster test runs after the single-node swarm tests (stable sort)."""
    items.sort(key=lambda item: item.get_closest_marker("cluster") is not None)


@pytest.fixture
def prod_settings() -> ProdSettings:
    """Product service settings as deployed, with a fixed instance name."""
    return ProdSettings(instance="prod-test")


@pytest.fixture
def prod_client(prod_settings: ProdSettings) -> Iterator[TestClient]:
    """The product app through its full ASGI stack, lifespan included."""
    with TestClient(create_prod_app(prod_settings)) as client:
        yield client


@pytest.fixture
def coupon_client() -> Iterator[TestClient]:
    """The coupon app through its full ASGI stack, lifespan included."""
    with TestClient(create_coupon_app(CouponSettings(instance="coupon-test"))) as client:
        yield client


@pytest.fixture(scope="session")
def upstream_servers() -> Iterator[Upstreams]:
    """The real prod and coupon apps on 127.0.0.1 behind fault servers, for the whole run."""
    servers = Upstreams()
    yield servers
    servers.close()


@pytest.fixture
def upstreams(upstream_servers: Upstreams) -> Iterator[Upstreams]:
    """The upstreams, healthy and with fresh counts; faults set by a test end with it."""
    upstream_servers.reset()
    yield upstream_servers
    upstream_servers.reset()


@pytest.fixture
def front_settings(upstreams: Upstreams) -> FrontSettings:
    """Front settings pointed at the test upstreams."""
    return front_settings_for(upstreams)


@pytest.fixture
def front_client(front_settings: FrontSettings) -> Iterator[TestClient]:
    """The front app (lifespan running) talking to the test upstreams over real sockets."""
    with TestClient(create_front_app(front_settings)) as client:
        yield client


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a TCP port on 127.0.0.1 that was free a moment ago."""
    def pick() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    return pick
