"""Property-based fuzzing of each service against its own OpenAPI schema (schemathesis).

Each app runs in-process with its lifespan (schemathesis starts it on the first call and its
pytest plugin stops it when the test ends); the front talks to the real prod and coupon apps
through an injected transport, so valid product numbers get a 200 and unknown ones a 404.

The cases are driven from `APIOperation.as_strategy()` rather than `schema.parametrize()`:
the lazy `schemathesis.pytest.from_fixture` loader reads `Function._nodeid`, which pytest 9
no longer has, and a module-level schema would build the apps at import time.
"""

from collections import Counter
from collections.abc import Callable, Iterator

import orjson
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from upstreams import Upstreams

from coupon_service.app import create_app as create_coupon_app
from coupon_service.settings import CouponSettings
from front_service.app import create_app as create_front_app
from front_service.settings import FrontSettings
from prod_service.app import create_app as create_prod_app
from prod_service.settings import ProdSettings
from shop_common.prodno import MAX_PROD_NO

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
MAX_EXAMPLES = 100  # per operation; those without parameters need one
# Generated strings rarely look like product numbers: these make sure the 200 and 404 answers
# (and the boundaries of the valid range) are checked against the schema too.
PROD_NOS = ["1", "2", "3", "4", "5", "0", "-1", "1.5", "007", str(MAX_PROD_NO),
            str(MAX_PROD_NO + 1), "9" * 40]

SERVICES: dict[str, Callable[[], FastAPI]] = {
    "prod": lambda: create_prod_app(ProdSettings(instance="prod-fuzz")),
    "coupon": lambda: create_coupon_app(CouponSettings(instance="coupon-fuzz")),
    "front": lambda: create_front_app(FrontSettings(instance="front-fuzz"),
                                      transport=Upstreams()),
}


@pytest.fixture(scope="module")
def cases_run(request: pytest.FixtureRequest) -> Iterator[Counter[tuple[str, int]]]:
    """Counts the cases sent per service and status; prints the totals when the module ends."""
    counts: Counter[tuple[str, int]] = Counter()
    yield counts
    lines = []
    for service in sorted({service for service, _ in counts}):
        statuses = {status: n for (name, status), n in sorted(counts.items()) if name == service}
        lines.append(f"  {service}: {sum(statuses.values())} cases, by status {statuses}")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("\nschemathesis cases run per service:\n" + "\n".join(lines))


def error_events(output: str) -> list[dict[str, object]]:
    # split on "\n" only: a logged path may hold U+2028 or U+0085, which splitlines() splits on
    events = [orjson.loads(line) for line in output.split("\n") if line.startswith("{")]
    return [event for event in events if event.get("event") == "error"]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_conforms_to_its_own_schema(
        service: str, cases_run: Counter[tuple[str, int]],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Whatever the schema allows gets a documented status and a conforming body, no 5xx."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", SERVICES[service]())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations

    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(checks=CHECKS)
        cases_run[service, response.status_code] += 1
        assert b"Traceback" not in response.content
        assert not error_events(capsys.readouterr().out)

    for operation in operations:
        strategy = operation.as_strategy()
        if "prodNo" in operation.path:
            strategy = st.one_of(strategy, st.sampled_from(PROD_NOS).map(
                lambda prod_no, op=operation: op.Case(path_parameters={"prodNo": prod_no})))

        @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(case=strategy)
        def fuzz(case: schemathesis.Case) -> None:
            run(case)

        fuzz()


@pytest.mark.parametrize(("service", "path", "statuses"), [
    ("prod", "/products/{prodNo}", {"200", "400", "404"}),
    ("coupon", "/products/{prodNo}/coupons", {"200", "400", "404"}),
    ("front", "/product-detail/{prodNo}", {"200", "400", "404", "502", "503", "504"}),
])
def test_schema_documents_the_errors_that_can_happen(
        service: str, path: str, statuses: set[str]) -> None:
    """Each operation documents the error answers it gives, and no 422 (bad input is a 400)."""
    schema = SERVICES[service]().openapi()
    responses = schema["paths"][path]["get"]["responses"]
    assert set(responses) == statuses
    for status in statuses - {"200"}:
        assert responses[status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]
