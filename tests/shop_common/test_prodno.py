import pytest

from shop_common.errors import ApiError
from shop_common.prodno import MAX_PROD_NO, parse_prod_no


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), ("4", 4), ("42", 42),
                                               (str(MAX_PROD_NO), MAX_PROD_NO)])
def test_valid_product_numbers_parse(raw: str, expected: int) -> None:
    """Positive integers up to the 32-bit limit are product numbers."""
    assert parse_prod_no(raw) == expected


@pytest.mark.parametrize("raw", [
    "", "abc", "0", "-1", "1.5", "1e3", "01", "+1", " 1", "1 ", "0x10", "１", "٣",
    str(MAX_PROD_NO + 1), "9" * 30, "1/2", "NaN",
])
def test_invalid_product_numbers_are_400(raw: str) -> None:
    """Anything else is a 400 whose message says what a valid number looks like."""
    with pytest.raises(ApiError) as caught:
        parse_prod_no(raw)
    assert caught.value.status == 400
    assert "1 to 2147483647" in caught.value.message
