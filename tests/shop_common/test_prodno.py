import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter, ValidationError

from shop_common.prodno import MAX_PROD_NO, ProdNo

prod_no = TypeAdapter(ProdNo)


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), ("4", 4), ("42", 42),
                                               (str(MAX_PROD_NO), MAX_PROD_NO)])
def test_valid_product_numbers_parse(raw: str, expected: int) -> None:
    """Positive integers up to the 32-bit limit, in plain digits, are product numbers."""
    assert prod_no.validate_python(raw) == expected


@pytest.mark.parametrize("raw", [
    "", "abc", "0", "-1", "1.5", "1.0", "1e3", "01", "+1", " 1", "1 ", "1_000", "0x10", "１",
    "٣", str(MAX_PROD_NO + 1), "9" * 30, "1/2", "NaN",
])
def test_other_spellings_are_refused(raw: str) -> None:
    """Anything else fails, with a message that says what a valid number looks like, even
    where pydantic's lax int parsing would have taken it (" 1", "+1", "1_000", "1.0")."""
    with pytest.raises(ValidationError) as caught:
        prod_no.validate_python(raw)
    assert caught.value.errors()[0]["msg"] == (
        f"must be an integer from 1 to {MAX_PROD_NO}, in plain digits")


def test_the_schema_says_integer_in_range(prod_client: TestClient) -> None:
    """The OpenAPI document states exactly what is accepted: an integer from 1 to the max."""
    operation = prod_client.get("/openapi.json").json()["paths"]["/products/{prodNo}"]["get"]
    (parameter,) = operation["parameters"]
    assert parameter["schema"]["type"] == "integer"
    assert parameter["schema"]["minimum"] == 1
    assert parameter["schema"]["maximum"] == MAX_PROD_NO
    assert "422" not in operation["responses"]


@pytest.mark.parametrize("raw", ["01", "+1", "1_000", "1.0", "%201", "1%20"])
def test_a_bad_spelling_in_a_path_is_400(prod_client: TestClient, raw: str) -> None:
    """In a URL too: one product, one URL; the error says which parameter and why."""
    response = prod_client.get(f"/products/{raw}")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        f"invalid request: prodNo: must be an integer from 1 to {MAX_PROD_NO}, in plain digits")
