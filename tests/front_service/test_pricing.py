import pytest

from front_service.models import UpstreamCoupon
from front_service.pricing import best_coupon_price, coupon_price


def coupon(kind: str, value: int) -> UpstreamCoupon:
    return UpstreamCoupon(id=1, type=kind, prodNos=[1], value=value)


@pytest.mark.parametrize(("price", "kind", "value", "expected"), [
    (123000, "RATE", 3, 119310),
    (160000, "RATE", 3, 155200),
    (1500000, "RATE", 3, 1455000),
    (999, "RATE", 3, 969),  # 969.03 rounds down: the shop never overcharges by a fraction
    (100, "RATE", 100, 0),
    (100, "RATE", 0, 100),
    (160000, "PRICE", 1000, 159000),
    (500, "PRICE", 1000, 0),  # never below zero
    (0, "PRICE", 1, 0),
])
def test_coupon_price(price: int, kind: str, value: int, expected: int) -> None:
    """RATE takes a whole-won percentage off (rounded down), PRICE a fixed amount, floor 0."""
    assert coupon_price(price, coupon(kind, value)) == expected


def test_unknown_coupon_type_has_no_price() -> None:
    """A coupon type this release does not know does not price."""
    assert coupon_price(1000, coupon("BOGO", 50)) is None


@pytest.mark.parametrize(("price", "coupons", "expected"), [
    (123000, [("RATE", 3)], 119310),
    (160000, [("RATE", 3), ("PRICE", 1000)], 155200),
    (160000, [("PRICE", 1000), ("RATE", 3)], 155200),
    (1500000, [("RATE", 3)], 1455000),
    (50000, [], 50000),
    (50000, [("BOGO", 90)], 50000),
    (1000, [("RATE", 3), ("PRICE", 100)], 900),
])
def test_best_coupon_price_is_the_lowest(price: int, coupons: list[tuple[str, int]],
                                         expected: int) -> None:
    """The best coupon is the one giving the lowest price; no usable coupon keeps the price."""
    assert best_coupon_price(price, [coupon(k, v) for k, v in coupons]) == expected
