from front_service.app import create_app
from front_service.settings import FrontSettings
from shop_common.serve import run_service


def main() -> None:
    run_service(FrontSettings, create_app)


if __name__ == "__main__":
    main()
