from coupon_service.app import create_app
from coupon_service.settings import CouponSettings
from shop_common.serve import run_service


def main() -> None:
    run_service(CouponSettings, create_app)


if __name__ == "__main__":
    main()
