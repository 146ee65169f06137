"""The shop's coupon service."""
