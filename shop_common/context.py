from contextvars import ContextVar

# Set by the request middleware for the life of each request; read by error bodies and by the
# front's upstream client, which forwards it.
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


def current_request_id() -> str:
    return request_id_var.get()
