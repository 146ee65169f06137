from pathlib import Path

import orjson
from pydantic import BaseModel, Field, field_validator

from shop_common.datafile import DataFileError, load_list
from shop_common.prodno import MAX_PROD_NO


class Product(BaseModel):
    prodNo: int = Field(ge=1, le=MAX_PROD_NO)
    name: str = Field(min_length=1)
    category: str
    desc: str
    price: int = Field(ge=0, description="price in won")

    @field_validator("price", mode="before")
    @classmethod
    def _whole_won(cls, value: object) -> object:
        if isinstance(value, float):
            raise ValueError("price must be a whole number of won")
        return value


class Catalogue:
    """Products loaded and validated once at start-up, each kept pre-serialised for answers."""

    def __init__(self, products: list[Product]) -> None:
        self.products = {product.prodNo: product for product in products}
        if len(self.products) != len(products):
            raise DataFileError("duplicate prodNo in catalogue")
        self.json_by_prod_no = {no: orjson.dumps(p.model_dump()) for no, p in self.products.items()}
        self.list_json = orjson.dumps([p.model_dump() for p in self.products.values()])

    @classmethod
    def from_file(cls, path: Path) -> "Catalogue":
        products = load_list(path, Product)
        try:
            return cls(products)
        except DataFileError as exc:
            raise DataFileError(f"invalid data file {path}: {exc}") from exc
