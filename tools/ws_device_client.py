#!/usr/bin/env python3
"""An independent WebSocket client (Python `websockets`) with a device id
in the URL (`?token=..&device=..`), for tests/devices.rs:

    ws_device_client.py URL ack3of6   reads 6 pushes, acknowledges the 3rd,
                                      prints "acked 3"
    ws_device_client.py URL resume    reads the replay, prints
                                      "replayed 4,5,6 resumed 6"
"""
import asyncio
import json
import sys

import websockets

TIMEOUT = 10


async def next_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout=TIMEOUT))


async def ack3of6(ws) -> str:
    offsets = []
    while len(offsets) < 6:
        frame = await next_json(ws)
        if frame.get("type") == "news":
            offsets.append(frame["offset"])
    await ws.send(json.dumps({"type": "ack", "offset": offsets[2]}))
    # ws-api handles a stream in order: once this id is acknowledged, so is the offset.
    await ws.send(json.dumps({"type": "sync", "payload": "", "id": "py-sync"}))
    while True:
        frame = await next_json(ws)
        if frame.get("type") == "ack" and frame.get("id") == "py-sync":
            return "acked " + offsets[2].split(":")[1]


async def resume(ws) -> str:
    seen = []
    while True:
        frame = await next_json(ws)
        n = frame.get("offset", ":").split(":")[1]
        if frame.get("type") == "resumed":
            return f"replayed {','.join(seen)} resumed {n}"
        seen.append(n)


async def main(url: str, step: str) -> int:
    async with websockets.connect(url, open_timeout=TIMEOUT) as ws:
        print(await {"ack3of6": ack3of6, "resume": resume}[step](ws))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
