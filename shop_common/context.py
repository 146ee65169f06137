from contextvars import ContextVar
from typing import Any

# Set by the request middleware for the life of each request; read by log lines, error bodies
# and the front's upstream client, which forwards it. None outside a request.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# The request's own fields for its access line (one canonical line per request): code that
# serves the request adds what it did (the front: each upstream call's summary). Set by the
# request middleware; None outside a request.
access_fields_var: ContextVar[dict[str, Any] | None] = ContextVar("access_fields", default=None)


def current_request_id() -> str:
    return request_id_var.get() or "-"


def access_fields() -> dict[str, Any]:
    """The current request's access-line fields to add to (a throwaway dict outside one)."""
    fields = access_fields_var.get()
    return fields if fields is not None else {}
