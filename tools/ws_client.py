#!/usr/bin/env python3
"""An independent WebSocket client (Python `websockets`): connects with a
token, sends one JSON frame, prints the reply and exits 0 if it is the echo.

    python3 tools/ws_client.py ws://127.0.0.1:8080/gateway/ws 42
"""
import asyncio
import base64
import json
import sys

import websockets


async def main(url: str, token: str) -> int:
    frame = json.dumps({"type": "message", "payload": base64.b64encode(b"hello from python").decode()},
                       separators=(",", ":"))
    async with websockets.connect(url, additional_headers={"token": token}, open_timeout=10) as ws:
        await ws.send(frame)
        reply = await asyncio.wait_for(ws.recv(), timeout=10)
    print(reply)
    return 0 if reply == frame else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "42")))
