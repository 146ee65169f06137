from pathlib import Path

from pydantic import Field

from shop_common.settings import ServiceSettings

PACKAGED_COUPONS = Path(__file__).parent / "data" / "coupons.json"


class CouponSettings(ServiceSettings):
    port: int = Field(default=3002, ge=1, le=65535)
    coupons_file: Path = PACKAGED_COUPONS
