"""The yardstick: a minimal FastAPI route returning a constant dict, served the way the shop's
services are (uvicorn, one worker, uvloop, httptools; no access log: it is the floor to
compare against, not a shop service).

Usage: python bench/yardstick.py PORT
"""

import sys

import uvicorn
from fastapi import FastAPI


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


if __name__ == "__main__":
    uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop",
                http="httptools", access_log=False, log_level="warning")
