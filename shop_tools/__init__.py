"""Command-line tools for the shop: shop-run, shop-probe and shop-logs."""
