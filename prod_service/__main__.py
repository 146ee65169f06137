from prod_service.app import create_app
from prod_service.settings import ProdSettings
from shop_common.serve import main_for


def main() -> None:
    settings = ProdSettings()
    main_for(lambda: create_app(settings), settings)


if __name__ == "__main__":
    main()
