"""shop-probe: call one URL at a fixed rate for a bounded time and report what happened.

- engine: the async open-loop engine (`Probe`), usable from any running event loop;
- report: each request's result, each second's figures, the run's report (plain data);
- blocking: `BlockingProbe`, the engine on anyio's blocking portal, for synchronous callers;
- display: the terminal (rich): live progress and the summary tables;
- cli: the `shop-probe` command.

engine and report need only aiohttp and anyio (the services' own dependencies; the engine runs
on asyncio); display and cli need rich (the `tools` extra).
"""
