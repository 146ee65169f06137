"""Container healthcheck without curl: `python -m console.healthcheck`.

Exit 0 when the console's /health on 127.0.0.1:$CONSOLE_PORT answers 200, 1 otherwise.
"""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = int(os.environ.get("CONSOLE_PORT", "8090"))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
