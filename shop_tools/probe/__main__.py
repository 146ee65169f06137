import sys

from shop_tools.probe.cli import main

sys.exit(main())
