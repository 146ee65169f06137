from pathlib import Path

from pydantic import Field

from shop_common.settings import ServiceSettings

PACKAGED_CATALOGUE = Path(__file__).parent / "data" / "products.json"


class ProdSettings(ServiceSettings):
    port: int = Field(default=3001, ge=1, le=65535)
    catalogue_file: Path = PACKAGED_CATALOGUE
