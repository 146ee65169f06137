"""The shop benchmark (`python -m bench`); not imported by the services."""
