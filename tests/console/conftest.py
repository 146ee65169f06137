"""The console under test: its settings pointed at a fake Docker Engine on 127.0.0.1
(tests/support/fake_engine.py), with the probe and Prometheus off unless a test sets them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from console.app import create_app
from console.settings import ConsoleSettings
from tests.support.fake_engine import FakeEngine, Served, Swarm


@pytest.fixture(scope="session")
def engine_server() -> Iterator[FakeEngine]:
    """One fake engine for the run."""
    engine = FakeEngine()
    yield engine
    engine.close()


@pytest.fixture
def engine(engine_server: FakeEngine) -> FakeEngine:
    """The fake engine, empty and with no calls recorded."""
    engine_server.swarm = Swarm()
    return engine_server


@pytest.fixture
def console_settings(engine: FakeEngine) -> ConsoleSettings:
    """Console settings for tests: the fake engine, quick re-readings, no probe, no
    Prometheus, no access log."""
    return ConsoleSettings(instance="console-test", docker_host=engine.url, probe_rate=0,
                           prometheus_url="", refresh_s=0.1, idle_refresh_s=0.5,
                           story_timeout_s=1.0, access_log=False)


@pytest.fixture
def console_app(console_settings: ConsoleSettings) -> FastAPI:
    return create_app(console_settings)


@pytest.fixture
def console_client(console_app: FastAPI) -> Iterator[TestClient]:
    """The console through its full ASGI stack, lifespan (and so its sources) running."""
    with TestClient(console_app) as client:
        yield client


@pytest.fixture
def console_server(console_app: FastAPI) -> Iterator[Served]:
    """The console served by uvicorn on 127.0.0.1 (for streams and the browser)."""
    served = Served(console_app)
    yield served
    served.close()
