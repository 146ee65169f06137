"""python -m console: serve the console (CONSOLE_* settings; see the README)."""

import sys

from pydantic import ValidationError

from console.app import create_app
from console.settings import ConsoleSettings, env_name
from shop_common.serve import serve


def main() -> None:
    try:
        settings = ConsoleSettings()
    except ValidationError as exc:
        problems = "\n".join(
            f"{env_name(str(error['loc'][0])) if error['loc'] else 'settings'}: {error['msg']}"
            for error in exc.errors())
        print(f"ConsoleSettings: invalid settings\n{problems}", file=sys.stderr)
        sys.exit(2)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
