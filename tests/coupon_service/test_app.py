import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from coupon_service.app import create_app
from coupon_service.settings import CouponSettings
from shop_common.datafile import DataFileError

RATE_3 = {"id": 1, "type": "RATE", "prodNos": [1, 2, 3], "value": 3}
PRICE_1000 = {"id": 2, "type": "PRICE", "prodNos": [2], "value": 1000}


@pytest.mark.parametrize(("prod_no", "expected"), [
    (1, [RATE_3]), (2, [RATE_3, PRICE_1000]), (3, [RATE_3]), (4, []), (999, []),
])
def test_coupons_for_product(coupon_client: TestClient, prod_no: int,
                             expected: list[dict[str, object]]) -> None:
    """The coupons that apply to a product; an empty list when none do, known product or not."""
    response = coupon_client.get(f"/products/{prod_no}/coupons")
    assert response.status_code == 200
    assert response.json() == expected


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "1.5", "9" * 30])
def test_invalid_product_number_is_400(coupon_client: TestClient, raw: str) -> None:
    """Invalid product numbers are a 400 with the JSON error shape."""
    response = coupon_client.get(f"/products/{raw}/coupons")
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"status", "code", "message", "request_id"}


def test_health(coupon_client: TestClient) -> None:
    """/health names the coupon service."""
    assert coupon_client.get("/health").json()["service"] == "coupon"


@pytest.mark.parametrize(("content", "problem"), [
    (None, "cannot read data file"),
    ("[", "invalid data file"),
    ('[{"id": 1, "type": "BOGO", "prodNos": [1], "value": 3}]', "type"),
    ('[{"id": 1, "type": "RATE", "prodNos": [1], "value": 101}]', "0 to 100"),
    ('[{"id": 1, "type": "PRICE", "prodNos": [1], "value": -1}]', "value"),
    ('[{"id": 1, "type": "PRICE", "prodNos": [], "value": 1}]', "prodNos"),
    ('[{"id": 1, "type": "PRICE", "prodNos": [1], "value": 1},'
     ' {"id": 1, "type": "RATE", "prodNos": [2], "value": 1}]', "duplicate"),
])
def test_bad_coupons_file_stops_start_up(tmp_path: Path, content: str | None,
                                         problem: str) -> None:
    """A missing or malformed coupons file stops the service naming the file and the problem."""
    data = tmp_path / "coupons.json"
    if content is not None:
        data.write_text(content)
    with pytest.raises(DataFileError) as caught:
        create_app(CouponSettings(coupons_file=data))
    assert str(data) in str(caught.value)
    assert problem in str(caught.value)


def test_coupons_file_setting(tmp_path: Path) -> None:
    """A coupons file named in the settings replaces the packaged one."""
    data = tmp_path / "coupons.json"
    data.write_text(json.dumps([{"id": 9, "type": "PRICE", "prodNos": [4], "value": 500}]))
    with TestClient(create_app(CouponSettings(coupons_file=data))) as client:
        assert client.get("/products/4/coupons").json()[0]["id"] == 9
        assert client.get("/products/2/coupons").json() == []
