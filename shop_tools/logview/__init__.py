"""shop-logs: the shop's JSON log lines as one readable, time-ordered stream.

    shop-logs --swarm                         # follow prod_app, coupon_app, front_app
    shop-logs --swarm --request-id 7f3a...    # one product-detail call through all three
    shop-logs --file recorded.log             # or pipe lines in on stdin
    shop-logs --swarm --raw | jq .            # JSON passed through, still merged and filtered

Each service writes one JSON object per line (see the contract: "ts", "service",
"instance", "event", ...). Lines from several sources are merged through a short reorder
buffer and printed by their "ts"; lines that are not JSON are printed as they are,
prefixed with their source, so a crash message is never lost.

Library use (the local runner): one LogPrinter shared by the reader threads,

    with LogPrinter(raw=False, request_id=None) as printer:
        printer.feed("prod", line)            # thread-safe, from any reader thread
"""

from shop_tools.logview.cli import main, swarm_command
from shop_tools.logview.printer import LogPrinter, pretty_stream
from shop_tools.logview.records import parse_line, split_docker_prefix
from shop_tools.logview.render import record_text

__all__ = ["LogPrinter", "main", "parse_line", "pretty_stream", "record_text",
           "split_docker_prefix", "swarm_command"]
