"""Per-request cost of one app, in process, without the network: `python -m bench.cost front`.

wrk figures on a shared 2-core machine move by 20-50 % from run to run, too much to judge a
lever worth 2-10 %. This drives one app through ASGI calls in a loop (the front with its real
upstream transport, against a minimal HTTP server in the same event loop that answers like the
product and coupon services) and reports CPU microseconds per request, or, with --instructions,
the number of instructions per request counted by valgrind (cachegrind): the same figure on
every run, whatever else the machine is doing. Run it under the project's venv; --source
measures another checkout (a directory holding the service packages) instead of this one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PRODUCT = ('{"prodNo":2,"name":"LG 19인치 모니터","category":"PC 주변기기",'
           '"desc":"LG 모니터 너무 좋아요.","price":160000}').encode()
COUPONS = (b'[{"id":1,"type":"RATE","prodNos":[1,2,3],"value":3},'
           b'{"id":2,"type":"PRICE","prodNos":[2],"value":1000}]')
PATHS = {"front": "/product-detail/2", "prod": "/products/2", "yardstick": "/"}


def _reply(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"x-request-id: 0123456789abcdef0123456789abcdef\r\n\r\n%s" % (len(body), body))


class CannedUpstream(asyncio.Protocol):
    """Answers keep-alive GETs like prod (/products/N) or coupon (/products/N/coupons)."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            request_line = head.split(b"\r\n", 1)[0]
            self.transport.write(_reply(COUPONS if b"/coupons" in request_line else PRODUCT))


def build_app(name: str, upstream_url: str) -> Any:
    if name == "front":
        from front_service.app import create_app
        from front_service.settings import FrontSettings
        return create_app(FrontSettings(instance="cost", prod_api_url=upstream_url,
                                        coupon_api_url=upstream_url))
    if name == "prod":
        from prod_service.app import create_app as create_prod_app
        from prod_service.settings import ProdSettings
        return create_prod_app(ProdSettings(instance="cost"))
    from bench.yardstick import create_app as create_yardstick
    return create_yardstick()


async def drive(name: str, requests: int, rounds: int) -> float:
    """Serve `requests` requests `rounds` times; the best CPU microseconds per request."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(CannedUpstream, "127.0.0.1", 0)
    app = build_app(name, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    path = PATHS[name]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "headers": [(b"host", b"bench")],
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080)}
    statuses: set[int] = set()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    best = float("inf")
    async with app.router.lifespan_context(app):
        for _ in range(rounds):
            started = time.process_time()
            for _ in range(requests):
                await app(dict(scope), receive, send)
            best = min(best, (time.process_time() - started) / requests * 1e6)
    server.close()
    if statuses != {200}:
        raise RuntimeError(f"{name} answered {sorted(statuses)}")
    return best


def run_once(name: str, requests: int, rounds: int) -> float:
    import uvloop  # as the services run
    real_stdout = sys.stdout
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the apps' JSON log lines go nowhere
    try:
        return uvloop.run(drive(name, requests, rounds))
    finally:
        sys.stdout.close()
        sys.stdout = real_stdout


def instructions(name: str, requests: int, source: Path) -> int:
    """Instructions per request: two counted runs, so start-up and import costs cancel out."""
    counts = []
    for n in (requests // 5, requests):
        with tempfile.TemporaryDirectory(prefix="shop-cost-") as directory:
            out_file = Path(directory) / "cachegrind.out"
            subprocess.run(
                ["valgrind", "--tool=cachegrind", "--cache-sim=no",
                 f"--cachegrind-out-file={out_file}",
                 sys.executable, "-m", "bench.cost", name, "--requests", str(n), "--rounds", "1",
                 "--source", str(source)],
                capture_output=True, text=True, timeout=1800, cwd=REPO, check=True,
            )
            counts.append(cachegrind_total(out_file.read_text()))
    return (counts[1] - counts[0]) // (requests - requests // 5)


def cachegrind_total(out_file_text: str) -> int:
    """The instructions counted, from cachegrind's output file (its `summary:` line; with
    --cache-sim=no the only event is Ir)."""
    for line in out_file_text.splitlines():
        key, _, values = line.partition(":")
        if key == "summary":
            return int(values.split()[0])
    raise ValueError("no summary line in cachegrind's output file")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("app", choices=sorted(PATHS))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5, help="CPU time: best of this many")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions with valgrind (about a minute)")
    parser.add_argument("--source", type=Path, default=REPO,
                        help="directory whose service packages are measured (default: this repo)")
    args = parser.parse_args(argv)
    source = args.source.resolve()
    sys.path.insert(0, str(source))
    if args.instructions:
        if shutil.which("valgrind") is None:
            print("valgrind not found (apt-get install valgrind)", file=sys.stderr)
            return 2
        per_request = instructions(args.app, args.requests, source)
        print(f"{args.app}: {per_request / 1000:,.0f} k instructions per request ({source})")
    else:
        micros = run_once(args.app, args.requests, args.rounds)
        print(f"{args.app}: {micros:,.0f} us CPU per request, best of {args.rounds} ({source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
