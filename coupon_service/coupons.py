from enum import StrEnum
from pathlib import Path

import orjson
from pydantic import BaseModel, Field, model_validator

from shop_common.datafile import DataFileError, load_list
from shop_common.prodno import MAX_PROD_NO


class CouponType(StrEnum):
    RATE = "RATE"  # value is percent off
    PRICE = "PRICE"  # value is won off


class Coupon(BaseModel):
    id: int = Field(ge=1)
    type: CouponType
    prodNos: list[int] = Field(min_length=1)
    value: int = Field(ge=0)

    @model_validator(mode="after")
    def _sane(self) -> "Coupon":
        if self.type is CouponType.RATE and self.value > 100:
            raise ValueError("a RATE coupon takes 0 to 100 percent off")
        if any(not 1 <= no <= MAX_PROD_NO for no in self.prodNos):
            raise ValueError(f"prodNos must be from 1 to {MAX_PROD_NO}")
        return self


class CouponBook:
    """Coupons loaded once at start-up, with each product's list pre-serialised."""

    def __init__(self, coupons: list[Coupon]) -> None:
        if len({coupon.id for coupon in coupons}) != len(coupons):
            raise DataFileError("duplicate coupon id")
        by_product: dict[int, list[dict[str, object]]] = {}
        for coupon in coupons:
            for prod_no in dict.fromkeys(coupon.prodNos):
                by_product.setdefault(prod_no, []).append(coupon.model_dump(mode="json"))
        self.json_by_prod_no = {no: orjson.dumps(items) for no, items in by_product.items()}

    def json_for_product(self, prod_no: int) -> bytes:
        return self.json_by_prod_no.get(prod_no, b"[]")

    @classmethod
    def from_file(cls, path: Path) -> "CouponBook":
        coupons = load_list(path, Coupon)
        try:
            return cls(coupons)
        except DataFileError as exc:
            raise DataFileError(f"invalid data file {path}: {exc}") from exc
