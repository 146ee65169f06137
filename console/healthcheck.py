"""Container healthcheck without curl: `python -m console.healthcheck`.

Exit 0 when the console's /health on 127.0.0.1:$CONSOLE_PORT answers 200, 1 otherwise.
"""

import os
import sys

from shop_common.healthcheck import check

if __name__ == "__main__":
    sys.exit(check(int(os.environ.get("CONSOLE_PORT", "8090"))))
