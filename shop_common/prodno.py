import re

from shop_common.errors import ApiError

MAX_PROD_NO = 2_147_483_647  # a signed 32-bit id: what the classic shop's database allowed
_PROD_NO = re.compile(r"[1-9][0-9]{0,9}")


def parse_prod_no(raw: str) -> int:
    """The product number in a path, or a 400 that says what a valid one looks like."""
    if _PROD_NO.fullmatch(raw) and int(raw) <= MAX_PROD_NO:
        return int(raw)
    raise ApiError(400, f"prodNo must be an integer from 1 to {MAX_PROD_NO}")
