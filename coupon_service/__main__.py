from coupon_service.app import create_app
from coupon_service.settings import CouponSettings
from shop_common.serve import main_for


def main() -> None:
    settings = CouponSettings()
    main_for(lambda: create_app(settings), settings)


if __name__ == "__main__":
    main()
