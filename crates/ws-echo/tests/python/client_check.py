#!/usr/bin/env python3
"""Third-party client check for ws-echo, using Python's `websockets` (v17 asyncio client).

Usage: client_check.py BASE_URL [--tick-interval SECONDS] [--skip-drain] [--hold]

Checks, in order: the hello frame comes first; text and binary are echoed exactly
(same type); `?mode=reverse` reverses text; ticks arrive at the interval (when
--tick-interval is given); the documented metric names are exposed; /readyz answers
503 after /drain. With --hold it then opens one more connection, prints
`HOLDING` and waits for the server to close it (the harness sends SIGTERM), printing
`CLOSE <code>`. Each passed check prints `OK <name>`. Exit status 0 only if every
check passed (and, with --hold, the close code was 1001).
"""

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.request

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

TIMEOUT = 5.0
METRICS = [
    "websocket_connections_active",
    "websocket_connections_total",
    'websocket_messages_total{direction="in"}',
    'websocket_messages_total{direction="out"}',
    "websocket_errors_total{kind=",
    "ws_echo_draining",
]


class CheckFailed(Exception):
    pass


def ensure(condition, message):
    if not condition:
        raise CheckFailed(message)


def ok(name):
    print(f"OK {name}", flush=True)


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def recv_json(ws):
    message = await recv(ws)
    ensure(isinstance(message, str), f"expected a text frame, got {message!r}")
    return json.loads(message)


async def check_hello_and_echo(ws_url):
    async with connect(f"{ws_url}/ws") as ws:
        hello = await recv_json(ws)
        ensure(hello.get("type") == "hello", f"first frame is not a hello: {hello}")
        for key in ("pod", "conn", "peer", "forwarded_for", "real_ip", "subprotocol"):
            ensure(key in hello, f"hello lacks {key}: {hello}")
        ok("hello_first")
        text = "héllo from python ✓"
        await ws.send(text)
        echoed = await recv(ws)
        ensure(echoed == text and isinstance(echoed, str), f"text echo: sent {text!r}, got {echoed!r}")
        data = bytes(range(256)) * 3
        await ws.send(data)
        echoed = await recv(ws)
        ensure(echoed == data and isinstance(echoed, bytes), f"binary echo differs ({len(echoed)} bytes)")
        ok("echo_text_and_binary")


async def check_reverse(ws_url):
    async with connect(f"{ws_url}/ws?mode=reverse&hello=false") as ws:
        await ws.send("stressed→")
        echoed = await recv(ws)
        ensure(echoed == "→desserts", f"reverse: got {echoed!r}")
        ok("reverse_mode")


async def check_ticks(ws_url, interval):
    async with connect(f"{ws_url}/ws") as ws:
        await recv_json(ws)  # hello
        arrivals, seqs = [], []
        while len(arrivals) < 4:
            tick = await recv_json(ws)
            ensure(tick.get("type") == "tick", f"expected a tick, got {tick}")
            arrivals.append(time.monotonic())
            seqs.append(tick["seq"])
        ensure(seqs == list(range(seqs[0], seqs[0] + 4)), f"tick seq not consecutive: {seqs}")
        for a, b in zip(arrivals, arrivals[1:]):
            gap = b - a
            ensure(interval / 2 <= gap <= interval * 3, f"tick gap {gap:.3f}s for interval {interval}s")
        ok("ticks_at_interval")


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT + 30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def check_metrics(base_url):
    status, body = http_status(f"{base_url}/metrics")
    ensure(status == 200, f"/metrics answered {status}")
    for name in METRICS:
        ensure(name in body, f"metric {name} missing")
    ok("metric_names")


def check_drain(base_url):
    status, _ = http_status(f"{base_url}/readyz")
    ensure(status == 200, f"/readyz answered {status} before drain")
    status, _ = http_status(f"{base_url}/drain")
    ensure(status == 200, f"/drain answered {status}")
    status, _ = http_status(f"{base_url}/readyz")
    ensure(status == 503, f"/readyz answered {status} after drain")
    ok("readyz_503_after_drain")


async def hold_until_closed(ws_url):
    async with connect(f"{ws_url}/ws") as ws:
        await recv_json(ws)  # hello
        print("HOLDING", flush=True)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 30)
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
            print(f"CLOSE {code}", flush=True)
            ensure(code == 1001, f"expected close code 1001, got {code}")
            ok("close_1001_after_sigterm")


async def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("base_url", help="e.g. http://127.0.0.1:8080")
    parser.add_argument("--tick-interval", type=float, default=0.0)
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument("--hold", action="store_true")
    args = parser.parse_args()
    base_url = args.base_url.rstrip("/")
    ws_url = "ws" + base_url[len("http"):]

    await check_hello_and_echo(ws_url)
    await check_reverse(ws_url)
    if args.tick_interval > 0:
        await check_ticks(ws_url, args.tick_interval)
    check_metrics(base_url)
    if not args.skip_drain:
        check_drain(base_url)
    if args.hold:
        await hold_until_closed(ws_url)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (CheckFailed, ConnectionClosed, asyncio.TimeoutError, OSError) as error:
        print(f"FAILED {type(error).__name__}: {error}", flush=True)
        sys.exit(1)
