#!/usr/bin/env python3
"""Python websockets against a gateway with --compression deflate: it
offers permessage-deflate by default. Sends a large and a small JSON
message and a protobuf one through ws-api's echo, and prints one JSON line:
{"extensions": [...negotiated...], "echoed": [true, ...]}.
With `alike`: texts alike but for their first bytes (read from stdin,
one per line) instead, and "server_takeover": whether the gateway
compresses with context takeover.

    python3 client.py ws://127.0.0.1:PORT/gateway/ws?token=1 [alike]
"""
import asyncio
import base64
import json
import sys

from websockets.asyncio.client import connect


async def alike(url: str) -> None:
    texts = sys.stdin.read().splitlines()
    async with connect(url) as ws:
        ext = ws.protocol.extensions[0]
        echoed = []
        for text in texts:
            payload = base64.b64encode(text.encode()).decode()
            await ws.send(json.dumps({"type": "message", "payload": payload}))
            echoed.append(json.loads(await ws.recv())["payload"] == payload)
        print(json.dumps({"extensions": [ext.name], "server_takeover": not ext.remote_no_context_takeover,
                          "echoed": echoed}))


async def main(url: str) -> None:
    async with connect(url) as ws:
        names = [e.name for e in ws.protocol.extensions]
        echoed = []
        for size in (1500, 10):
            payload = base64.b64encode(b"a compressible line. " * size).decode()
            await ws.send(json.dumps({"type": "message", "payload": payload}))
            echoed.append(json.loads(await ws.recv())["payload"] == payload)
        # A protobuf Protocol{type: "message", payload: ...} (binary frame).
        body = b"compress me " * 100
        frame = b"\x0a\x07message\x12" + bytes([len(body) & 0x7f | 0x80, len(body) >> 7]) + body
        await ws.send(frame)
        echoed.append(await ws.recv() == frame)
        print(json.dumps({"extensions": names, "echoed": echoed}))


asyncio.run(alike(sys.argv[1]) if sys.argv[2:] == ["alike"] else main(sys.argv[1]))
