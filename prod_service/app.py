from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from prod_service.catalogue import Catalogue, Product
from prod_service.settings import ProdSettings
from shop_common.app import build_app
from shop_common.errors import ApiError, error_responses
from shop_common.prodno import parse_prod_no

router = APIRouter(prefix="/products", tags=["products"])


@router.get("", response_model=list[Product])
async def list_products(request: Request) -> Response:
    """Every product in the catalogue."""
    catalogue: Catalogue = request.app.state.catalogue
    return Response(catalogue.list_json, media_type="application/json")


@router.get("/{prodNo}", response_model=Product, responses=error_responses(400, 404))
async def get_product(prodNo: str, request: Request) -> Response:
    """One product by its number."""
    prod_no = parse_prod_no(prodNo)
    # Read from app state, not through Depends: a dependency is solved on every request,
    # and this one never changes (bench/README.md).
    catalogue: Catalogue = request.app.state.catalogue
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
        settings=settings, routers=[router], simulate_latency=True,
        direct_paths=["/products/{prodNo}"],
    )
    app.state.catalogue = catalogue
    return app
