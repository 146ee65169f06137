"""The shop's product catalogue service."""
