import re
from typing import Annotated

from fastapi import Path
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

MAX_PROD_NO = 2_147_483_647  # a signed 32-bit id: what the classic shop's database allowed
_PLAIN_DIGITS = re.compile(r"[1-9][0-9]{0,9}")


def _plain_prod_no(value: object) -> object:
    # pydantic's lax int parsing would take "01", " 1", "+1", "1_000" and "1.0" as 1: one
    # product, one URL, so only plain digits get through to the int validation.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _PLAIN_DIGITS.fullmatch(value) and int(value) <= MAX_PROD_NO:
        return int(value)
    raise PydanticCustomError("prod_no", "must be an integer from 1 to {max}, in plain digits",
                              {"max": MAX_PROD_NO})


# A product number in a path: the schema says integer 1..MAX_PROD_NO, and the validator keeps
# the written form canonical. Path() must come before the validator for the schema to carry
# minimum and maximum.
ProdNo = Annotated[
    int,
    Path(ge=1, le=MAX_PROD_NO, description=f"product number, 1 to {MAX_PROD_NO}",
         examples=[2]),
    BeforeValidator(_plain_prod_no),
]
