"""Property-based fuzzing of each service against its own OpenAPI schema (schemathesis).

Each app runs in-process with its lifespan (schemathesis starts it on the first call and its
pytest plugin stops it when the test ends); the front talks to the real prod and coupon apps
over real sockets (tests/support/upstreams.py), so valid product numbers get a 200 and unknown
ones a 404. Every check schemathesis has runs on every case (as `schemathesis run -c all` does), on
data that fits the schema (which must be accepted) and data that does not (which must be
refused).

The cases are driven from `APIOperation.as_strategy()` rather than `schema.parametrize()`:
the lazy `schemathesis.pytest.from_fixture` loader reads `Function._nodeid`, which pytest 9
no longer has, and a module-level schema would build the apps at import time.
"""

from collections import Counter
from collections.abc import Iterator

import orjson
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks

from coupon_service.app import create_app as create_coupon_app
from coupon_service.settings import CouponSettings
from front_service.app import create_app as create_front_app
from prod_service.app import create_app as create_prod_app
from prod_service.settings import ProdSettings
from shop_common.prodno import MAX_PROD_NO
from tests.support.upstreams import Upstreams, front_settings_for

MAX_EXAMPLES = 100  # per operation and generation mode; those without parameters need one
# Generated strings rarely look like product numbers: these make sure the 200 and 404 answers
# (and the boundaries of the valid range) are checked against the schema too.
PROD_NOS = ["1", "2", "3", "4", "5", "0", "-1", "1.5", "007", str(MAX_PROD_NO),
            str(MAX_PROD_NO + 1), "9" * 40]

SERVICES = ("coupon", "front", "prod")


def create_app(service: str, upstreams: Upstreams) -> FastAPI:
    if service == "prod":
        return create_prod_app(ProdSettings(instance="prod-fuzz"))
    if service == "coupon":
        return create_coupon_app(CouponSettings(instance="coupon-fuzz"))
    return create_front_app(front_settings_for(upstreams, instance="front-fuzz",
                                               upstream_timeout_seconds=2.0,
                                               upstream_attempt_timeout_seconds=2.0))


def all_checks() -> list[schemathesis.CheckFunction]:
    load_all_checks()
    return CHECKS.get_all()  # type: ignore[return-value]


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


@pytest.mark.parametrize("service", SERVICES)
def test_service_conforms_to_its_own_schema(
        service: str, upstreams: Upstreams, cases_run: Counter[tuple[str, int]],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Whatever the schema allows is accepted, with a documented status and a conforming
    body; whatever it does not allow is refused with a 4xx; never a 5xx."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(service, upstreams))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    checks = all_checks()
    assert {check.__name__ for check in checks} >= {
        "not_a_server_error", "status_code_conformance", "content_type_conformance",
        "response_headers_conformance", "response_schema_conformance",
        "negative_data_rejection", "positive_data_acceptance", "unsupported_method"}

    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(checks=checks)
        cases_run[service, response.status_code] += 1
        assert b"Traceback" not in response.content
        assert not error_events(capsys.readouterr().out)

    for operation in operations:
        strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                             operation.as_strategy(GenerationMode.NEGATIVE))
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
        service: str, path: str, statuses: set[str], upstreams: Upstreams) -> None:
    """Each operation documents the error answers it gives, and no 422 (bad input is a 400)."""
    schema = create_app(service, upstreams).openapi()
    responses = schema["paths"][path]["get"]["responses"]
    assert set(responses) == statuses
    for status in statuses - {"200"}:
        assert responses[status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]
