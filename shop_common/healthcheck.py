"""Container healthcheck without curl: `python -m shop_common.healthcheck`.

Exit 0 when http://127.0.0.1:$SHOP_PORT/health answers 200, 1 otherwise.
"""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    return check(int(os.environ.get("SHOP_PORT", "8080")))


def check(port: int) -> int:
    """0 when GET /health on 127.0.0.1:`port` answers 200, else 1 (the reason on stderr)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
