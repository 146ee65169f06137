from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.responses import Response

from prod_service.catalogue import Catalogue, Product
from prod_service.settings import ProdSettings
from shop_common.app import build_app, simulated_latency
from shop_common.errors import ApiError, error_responses
from shop_common.prodno import parse_prod_no

router = APIRouter(prefix="/products", tags=["products"],
                   dependencies=[Depends(simulated_latency)])


async def _catalogue(request: Request) -> Catalogue:
    return request.app.state.catalogue


CatalogueDep = Annotated[Catalogue, Depends(_catalogue)]


@router.get("", response_model=list[Product])
async def list_products(catalogue: CatalogueDep) -> Response:
    """Every product in the catalogue."""
    return Response(catalogue.list_json, media_type="application/json")


@router.get("/{prodNo}", response_model=Product, responses=error_responses(400, 404))
async def get_product(prodNo: str, catalogue: CatalogueDep) -> Response:
    """One product by its number."""
    prod_no = parse_prod_no(prodNo)
    body = catalogue.json_by_prod_no.get(prod_no)
    if body is None:
        raise ApiError(404, f"product {prod_no} does not exist")
    return Response(body, media_type="application/json")


def create_app(settings: ProdSettings | None = None) -> FastAPI:
    settings = settings or ProdSettings()
    catalogue = Catalogue.from_file(settings.catalogue_file)
    app = build_app(
        service="prod", title="Shop product service",
        description="The product catalogue: name, category, description and price in won.",
        settings=settings, routers=[router],
    )
    app.state.catalogue = catalogue
    return app
