"""`shop-run`: the three services on 127.0.0.1 in one command, no Docker.

Starts prod (3001), coupon (3002) and front (8080) as separate processes, exactly as they run
in a container (`python -m <service>`), with the front pointed at the local ones. Prints their
logs as one readable stream (`--raw` for the JSON lines). Ctrl-C stops all three.
"""

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table
from rich.text import Text

from shop_tools.logview import LogPrinter

HOST = "127.0.0.1"


@dataclass
class Service:
    name: str
    module: str
    port: int
    process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def service_env(service: Service, services: dict[str, Service], release: str) -> dict[str, str]:
    env = {
        **os.environ,
        "SHOP_HOST": HOST,
        "SHOP_PORT": str(service.port),
        "SHOP_RELEASE": release,
        # What a release 1 image is built with (docker/Dockerfile): no couponPrice.
        "SHOP_COUPON_PRICE": "false" if release == "1" else "true",
        "PYTHONUNBUFFERED": "1",
    }
    if service.name == "front":
        env["SHOP_PROD_API_URL"] = services["prod"].url
        env["SHOP_COUPON_API_URL"] = services["coupon"].url
    return env


def start(service: Service, env: dict[str, str], printer: LogPrinter) -> None:
    service.process = subprocess.Popen(
        [sys.executable, "-m", service.module],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        bufsize=1,
        start_new_session=True,  # signals come from us, so Ctrl-C does not skip our order
    )

    def pump() -> None:
        assert service.process is not None
        assert service.process.stdout is not None
        for line in service.process.stdout:
            printer.feed(service.name, line.rstrip("\n"))

    threading.Thread(target=pump, name=f"logs-{service.name}", daemon=True).start()


def wait_healthy(services: Sequence[Service], timeout: float) -> Service | None:
    """Poll each /health until 200; the first service that died or stayed down, else None."""
    deadline = time.monotonic() + timeout
    pending = list(services)
    while pending:
        service = pending[0]
        assert service.process is not None
        if service.process.poll() is not None:
            return service
        try:
            with urllib.request.urlopen(f"{service.url}/health", timeout=1) as response:  # noqa: S310 - our own loopback URL
                if response.status == 200:
                    pending.pop(0)
                    continue
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            return service
        time.sleep(0.05)
    return None


def stop(services: Sequence[Service], sig: int, timeout: float) -> int:
    """Signal every running service, wait for them; the worst exit status."""
    for service in services:
        if service.process and service.process.poll() is None:
            service.process.send_signal(sig)
    worst = 0
    deadline = time.monotonic() + timeout
    for service in services:
        if service.process is None:
            continue
        try:
            code = service.process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            service.process.kill()
            code = service.process.wait()
        worst = max(worst, abs(code))
    return worst


# shop-run's own messages go to stderr, through rich; the services' logs to stdout.
console = Console(stderr=True, highlight=False)


def say(message: str, style: str = "") -> None:
    console.print(Text.assemble(("shop-run: ", "bold"), (message, style)))


def where_they_listen(services: dict[str, Service], release: str) -> Table:
    table = Table(title="shop-run: the shop on this machine", title_justify="left",
                  caption="API docs at /docs on each; Ctrl-C stops all three",
                  caption_justify="left")
    table.add_column("service", style="bold")
    table.add_column("try", no_wrap=True)  # whole URLs, to copy
    paths = {"prod": "/products/2", "coupon": "/products/2/coupons",
             "front": "/product-detail/2"}
    for name, service in services.items():
        label = f"{name} (release {release})" if name == "front" else name
        table.add_row(label, service.url + paths[name])
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shop-run", description=__doc__.splitlines()[0])
    parser.add_argument("--prod-port", type=int, default=3001)
    parser.add_argument("--coupon-port", type=int, default=3002)
    parser.add_argument("--front-port", type=int, default=8080)
    parser.add_argument("--release", default="2", help="front release: 1 or 2 (default 2)")
    parser.add_argument("--raw", action="store_true", help="print the JSON log lines as they are")
    parser.add_argument("--request-id", help="only show log lines of this request id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    services = {
        "prod": Service("prod", "prod_service", args.prod_port),
        "coupon": Service("coupon", "coupon_service", args.coupon_port),
        "front": Service("front", "front_service", args.front_port),
    }
    stop_requested = threading.Event()
    signals = {}

    def on_signal(sig: int, _frame: object) -> None:
        signals["sig"] = sig
        stop_requested.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    with LogPrinter(raw=args.raw, request_id=args.request_id) as printer:
        for service in services.values():
            start(service, service_env(service, services, args.release), printer)
        failed = wait_healthy(list(services.values()), timeout=15)
        if failed is not None:
            stop(list(services.values()), signal.SIGINT, timeout=5)
            say(f"{failed.name} service did not become healthy on {failed.url}", "red")
            return 1
        console.print(where_they_listen(services, args.release))
        while not stop_requested.wait(0.2):
            dead = [(s.name, code) for s in services.values()
                    if s.process and (code := s.process.poll()) is not None]
            if dead:
                say(f"{dead[0][0]} exited with {dead[0][1]}; stopping the others", "red")
                stop(list(services.values()), signal.SIGINT, timeout=10)
                return 1
        # Ctrl-C: stop now. SIGTERM: the services drain as they would in a swarm.
        sig = signals.get("sig", signal.SIGINT)
        # Front first, so it does not see its upstreams vanish under requests it is serving.
        order = [services["front"], services["prod"], services["coupon"]]
        code = stop(order, sig, timeout=30)
    say(f"stopped (exit status {code})", "green" if code == 0 else "red")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
