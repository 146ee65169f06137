"""The shop's front: product detail aggregated from the product and coupon services."""
