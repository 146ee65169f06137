from front_service.app import create_app
from front_service.settings import FrontSettings
from shop_common.serve import main_for


def main() -> None:
    settings = FrontSettings()
    main_for(lambda: create_app(settings), settings)


if __name__ == "__main__":
    main()
