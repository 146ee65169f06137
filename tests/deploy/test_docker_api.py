"""The Docker API proxy (stacks/docker-api.yml) as it runs: the edge's HAProxy image with
stacks/docker-api/haproxy.cfg, in front of the engine's real socket, as Debian's haproxy user
in the socket's group, read-only and without capabilities; published on 127.0.0.1 here so the
test can call it. Through the autoscaler's allow-list its calls pass and others are refused;
through a read-only list (the console's, and a wider one) no write passes, and a stream
outlives the timeout of ordinary calls. In front of a stand-in engine on a unix socket
(tests/support/fake_engine.py) whose service logs never end: a log read without follow is
closed after an ordinary call's silence, a followed one is held open as a stream.

Marker swarm: it needs a Docker Engine (and answers for the swarm's services) and holds the
shared engine as the other swarm tests do.
"""

from __future__ import annotations

import contextlib
import http.client
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import docker.errors
import docker.types
import httpx
import pytest

from tests.support.docker_api import DOCKER_API, allow_list, passes
from tests.support.fake_engine import FakeEngine
from tests.support.swarm_deployment import EDGE_IMAGE, REPO, Docker, _docker_binary, wait_for

pytestmark = pytest.mark.swarm

SOCKET = Path("/var/run/docker.sock")
CONFIG = REPO / "stacks" / "docker-api" / "haproxy.cfg"
REFUSED = "refused by the docker-api proxy"
# A wider read-only list than the console's: every list, one object's inspect, the events
# stream and the logs.
READ_ONLY_LIST = r"""
^GET /version$
^GET (/v[0-9]+\.[0-9]+)?/_ping$
^GET (/v[0-9]+\.[0-9]+)?/events$
^GET (/v[0-9]+\.[0-9]+)?/(nodes|services|tasks|containers/json)$
^GET (/v[0-9]+\.[0-9]+)?/(nodes|services|tasks)/[A-Za-z0-9][A-Za-z0-9_.-]*$
^GET (/v[0-9]+\.[0-9]+)?/(services|containers)/[A-Za-z0-9][A-Za-z0-9_.-]*/logs$
"""
# The proxy's timeout for an ordinary call (haproxy.cfg, `timeout server`).
ORDINARY_CALL_S = 10


@pytest.fixture(scope="module")
def engine(missing_docker: Callable[[str], None]) -> Docker:
    """The docker client, with an engine answering on this machine's socket."""
    binary = _docker_binary()
    if binary is None:
        missing_docker("no docker client")
    client = Docker(str(binary))
    if client.run("info", check=False).returncode != 0 or not SOCKET.is_socket():
        missing_docker(f"no Docker Engine answering on {SOCKET}")
    if client.run("image", "inspect", EDGE_IMAGE, check=False).returncode != 0:
        pytest.fail(f"edge image {EDGE_IMAGE} missing: docker/build-base-image.sh edge",
                    pytrace=False)
    return client


@pytest.fixture(scope="module")
def proxy(engine: Docker) -> Iterator[Callable[..., str]]:
    """A function starting the proxy with an allow-list file, in front of the engine's socket
    or another one (`engine_socket`); returns its base URL. Every proxy started is removed at
    the end of the module."""
    started: list[str] = []

    def start(allow_list: Path, engine_socket: Path = SOCKET) -> str:
        container = engine.out(
            "run", "-d", "--user", f"100:{engine_socket.stat().st_gid}", "--read-only",
            "--cap-drop", "ALL", "--tmpfs", "/tmp:size=1m",
            "--label", "io.swarm-shop.test=docker-api",
            "-v", f"{engine_socket}:/var/run/docker.sock:ro",
            "-v", f"{CONFIG}:/usr/local/etc/haproxy/haproxy.cfg:ro",
            "-v", f"{allow_list}:/usr/local/etc/haproxy/allow.lst:ro",
            "-p", "127.0.0.1::2375", EDGE_IMAGE,
        )
        started.append(container)
        address = engine.out("port", container, "2375/tcp").splitlines()[0]
        url = f"http://{address}"

        def answers() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{url}/_ping", timeout=2).status_code in (200, 403)
            return False

        wait_for("the proxy to answer", answers, timeout=30)
        return url

    yield start
    if started:
        engine.run("rm", "-f", *started, check=False)


@pytest.fixture(scope="module")
def autoscaler_proxy(proxy: Callable[..., str]) -> str:
    return proxy(DOCKER_API / "autoscaler.lst")


def sdk(url: str) -> docker.DockerClient:
    """The Docker SDK as the autoscaler builds it (version detected from the engine)."""
    return docker.DockerClient(base_url=url.replace("http://", "tcp://"), timeout=30)


def raw(url: str, method: str, path: str) -> tuple[int, bytes]:
    """One request with the path sent exactly as written (no client cleans it first)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=b"{}" if method != "GET" else None,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_autoscaler_calls_pass_through_its_proxy(autoscaler_proxy: str) -> None:
    """The calls on the autoscaler's list reach the engine: the version, ping, the list of
    the swarm's services, and an update (of a service that does not exist: the engine's own
    404, not the proxy's 403)."""
    client = sdk(autoscaler_proxy)
    assert client.ping() is True
    assert isinstance(client.services.list(), list)
    spec = docker.types.TaskTemplate(docker.types.ContainerSpec("busybox"))
    with pytest.raises(docker.errors.NotFound) as missing:
        client.api.update_service("no-such-service-here", 1, task_template=spec)
    assert REFUSED not in str(missing.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.containers.list(),
        lambda c: c.info(),
        lambda c: c.images.list(),
        lambda c: c.nodes.list(),
        lambda c: c.api.inspect_service("x1y2z3"),
        lambda c: c.api.remove_service("x1y2z3"),
        lambda c: c.api.create_service({"ContainerSpec": {"Image": "busybox"}}),
        lambda c: c.containers.create("busybox", "true"),
        lambda c: c.api.exec_create("x1y2z3", "id"),
        lambda c: c.swarm.reload(),
    ],
    ids=["containers", "info", "images", "nodes", "inspect-service", "remove-service",
         "create-service", "create-container", "exec", "swarm"],
)
def test_calls_outside_the_autoscalers_list_are_refused(autoscaler_proxy: str, call) -> None:
    """Anything not on the list gets the proxy's 403 with its message, reads and writes
    alike; the engine never sees it."""
    with pytest.raises(docker.errors.APIError) as refused:
        call(sdk(autoscaler_proxy))
    assert refused.value.status_code == 403
    assert REFUSED in str(refused.value)


@pytest.mark.parametrize(
    "path",
    [
        "/v1.41/services/../containers/json",
        "/v1.41/services/%2e%2e/containers/json",
        "/v1.41/services%2F..%2Fcontainers/json",
        "//v1.41/services",
        "/v1.41/services/./x1y2z3/update",
        "/V1.41/services",
    ],
)
def test_paths_the_engine_would_clean_are_refused(autoscaler_proxy: str, path: str) -> None:
    """A path the engine's router would decode or clean into another call is refused, even
    where it starts like an allowed one."""
    method = "POST" if path.endswith("/update") else "GET"
    status, body = raw(autoscaler_proxy, method, path)
    assert status == 403, body[:300]
    assert REFUSED.encode() in body


def read_only_lists(tmp_path: Path) -> list[Path]:
    """The read-only list above, and every consumer's list in stacks/docker-api/ that has
    only GET lines (the console's)."""
    own = tmp_path / "read-only.lst"
    own.write_text(READ_ONLY_LIST)
    lists = [own]
    for path in sorted(DOCKER_API.glob("*.lst")):
        rules = allow_list(path.stem)
        if rules and all(x.startswith("^GET ") for x in rules):
            lists.append(path)
    return lists


READS = ["/v1.41/nodes", "/v1.41/services", "/v1.41/tasks", "/v1.41/containers/json"]
WRITES = [
    ("POST", "/v1.41/containers/create"),
    ("POST", "/v1.41/services/create"),
    ("POST", "/v1.41/services/x1y2z3/update"),
    ("POST", "/v1.41/containers/x1y2z3/kill"),
    ("POST", "/v1.41/containers/x1y2z3/exec"),
    ("DELETE", "/v1.41/services/x1y2z3"),
    ("DELETE", "/v1.41/containers/x1y2z3"),
    ("PUT", "/v1.41/containers/x1y2z3/archive"),
    ("POST", "/v1.41/swarm/leave"),
]


def test_no_write_passes_a_read_only_proxy(
    proxy: Callable[..., str], tmp_path: Path
) -> None:
    """Through a proxy whose list has only GET lines (the console's among them), the reads
    on its list pass (of nodes, services, tasks, containers), the others are refused, and
    every POST, PUT and DELETE is refused, whatever its path."""
    lists = read_only_lists(tmp_path)
    assert DOCKER_API / "console.lst" in lists
    for path in lists:
        url = proxy(path)
        rules = allow_list(path.stem, path.parent)
        allowed = [read for read in READS if passes(rules, "GET", read)]
        assert allowed, path
        for read in READS:
            expected = 200 if read in allowed else 403
            assert httpx.get(url + read, timeout=30).status_code == expected, (path, read)
        for method, write in WRITES:
            status, body = raw(url, method, write)
            assert (status, REFUSED.encode() in body) == (403, True), (path, method, write)


def test_a_quiet_events_stream_outlives_the_ordinary_timeout(
    proxy: Callable[..., str], tmp_path: Path
) -> None:
    """The events stream (here bounded by `until`, and filtered to stay quiet) is not cut by
    the timeout of ordinary calls: it runs to its end and closes cleanly."""
    allow_list = tmp_path / "events.lst"
    allow_list.write_text(READ_ONLY_LIST)
    url = proxy(allow_list)
    since = int(time.time())
    until = since + ORDINARY_CALL_S + 2
    started = time.monotonic()
    response = httpx.get(f"{url}/v1.41/events", timeout=ORDINARY_CALL_S + 20, params={
        "since": since, "until": until, "filters": '{"type": ["plugin"]}'})
    elapsed = time.monotonic() - started
    # httpx read the whole chunked body: a stream cut by the proxy would have raised here.
    assert response.status_code == 200
    assert elapsed > ORDINARY_CALL_S, elapsed  # open longer than an ordinary call may be


# A service-log read, by what it says of follow (the query as sent), and whether the proxy
# holds it open as a stream when it is quiet. The Docker SDK sends follow=True for a service's
# logs, follow=1 for a container's; the CLI follow=1. The engine takes every value but 0,
# false, no and none (any case) as true: a value the proxy does not know (yes) gets the
# ordinary bound, the safe side.
QUIET_READS = {
    "": False,
    "follow=0": False,
    "follow=False": False,
    "follow=yes": False,
    "follow=1": True,
    "follow=True": True,
    "follow=true": True,
}


@pytest.fixture(scope="module")
def endless_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeEngine]:
    """A stand-in engine on a unix socket whose front_app logs send a line and never end,
    as Engine 20.10's service logs were seen to do after a rolling update."""
    engine = FakeEngine(tmp_path_factory.mktemp("engine") / "engine.sock")
    engine.swarm.service_logs = {"front_app": [(time.time(), b"a line")]}
    engine.swarm.endless_service_logs = {"front_app"}
    yield engine
    engine.close()


def quiet_read(url: str, query: str, wait_s: float) -> float | None:
    """Seconds until the read of front_app's logs ended (the proxy closed it), or None if it
    was still open, silent, after `wait_s`."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    started = time.monotonic()
    connection = http.client.HTTPConnection(host, int(port), timeout=wait_s)
    try:
        connection.request("GET", f"/v1.41/services/front_app/logs?stdout=1&{query}")
        response = connection.getresponse()
        response.read()
    except TimeoutError:
        return None
    except (http.client.IncompleteRead, ConnectionError):
        pass  # cut in the middle of the answer: ended by the proxy
    finally:
        connection.close()
    return time.monotonic() - started


def test_only_a_followed_log_read_is_held_open_when_quiet(
    proxy: Callable[..., str], endless_engine: FakeEngine
) -> None:
    """Through the console's list, a service-log read that the engine leaves without an end
    is closed by the proxy after an ordinary call's silence unless it follows the log
    (follow=1 or true): that one is a stream, still open well past it."""
    url = proxy(DOCKER_API / "console.lst", engine_socket=Path(
        endless_engine.url.removeprefix("unix://")))
    wait_s = ORDINARY_CALL_S + 5
    with ThreadPoolExecutor(len(QUIET_READS)) as pool:
        ended = dict(zip(QUIET_READS, pool.map(lambda q: quiet_read(url, q, wait_s),
                                               QUIET_READS), strict=True))
    for query, stream in QUIET_READS.items():
        if stream:
            assert ended[query] is None, (query, ended[query])
        else:
            assert ended[query] is not None, query
            assert ORDINARY_CALL_S - 1 < ended[query] < wait_s, (query, ended[query])
    logs = [path for _, path in endless_engine.swarm.calls if path.endswith("/logs")]
    assert len(logs) == len(QUIET_READS)  # every read reached the engine
