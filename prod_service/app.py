from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Response

from prod_service.catalogue import Catalogue, Product
from prod_service.settings import ProdSettings
from shop_common.app import app_state, build_app
from shop_common.errors import ApiError, error_responses
from shop_common.prodno import ProdNo

CatalogueDep = Annotated[Catalogue, Depends(app_state("catalogue"))]

router = APIRouter(prefix="/products", tags=["products"])


# The catalogue was validated against Product when it was loaded and keeps each answer
# serialised: the routes send those bytes, and response_model documents their shape.
@router.get("", response_model=list[Product])
async def list_products(catalogue: CatalogueDep) -> Response:
    """Every product in the catalogue."""
    return Response(catalogue.list_json, media_type="application/json")


@router.get("/{prodNo}", response_model=Product, responses=error_responses(400, 404))
async def get_product(prodNo: ProdNo, catalogue: CatalogueDep) -> Response:
    """One product by its number."""
    body = catalogue.json_by_prod_no.get(prodNo)
    if body is None:
        raise ApiError(404, f"product {prodNo} does not exist")
    return Response(body, media_type="application/json")


def create_app(settings: ProdSettings | None = None) -> FastAPI:
    settings = settings or ProdSettings()
    return build_app(
        service="prod", title="Shop product service",
        description="The product catalogue: name, category, description and price in won.",
        settings=settings, routers=[router], simulate_latency=True,
        state={"catalogue": Catalogue.from_file(settings.catalogue_file)},
    )
