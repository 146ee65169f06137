from prod_service.app import create_app
from prod_service.settings import ProdSettings
from shop_common.serve import run_service


def main() -> None:
    run_service(ProdSettings, create_app)


if __name__ == "__main__":
    main()
