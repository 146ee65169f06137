from tests.support.tiny_server import server, tiny_server  # noqa: F401 - the fixtures
