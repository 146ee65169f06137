from contextvars import ContextVar

# Set by the request middleware for the life of each request; read by log lines, error bodies
# and the front's upstream client, which forwards it. None outside a request.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str:
    return request_id_var.get() or "-"
