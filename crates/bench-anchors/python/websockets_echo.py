"""The Python anchor for `cargo xtask bench`: the `websockets` (17.4) asyncio echo server.

Usage: websockets_echo.py [HOST:PORT]  (default 127.0.0.1:0); prints `listening on <host>:<port>`.
The handler is the library's documented echo server; only the listen backlog is raised, so a
burst of 10k connection attempts is not throttled by asyncio's default backlog of 100.
"""

import asyncio
import signal
import sys

from websockets.asyncio.server import serve


async def echo(websocket):
    async for message in websocket:
        await websocket.send(message)


async def main(listen):
    host, _, port = listen.rpartition(":")
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    async with serve(echo, host, int(port), backlog=4096) as server:
        bound_host, bound_port = server.sockets[0].getsockname()[:2]
        print(f"listening on {bound_host}:{bound_port}", flush=True)
        try:
            await stop
        except asyncio.CancelledError:
            pass


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:0"))
