#!/usr/bin/env python3
"""An identity provider and connect proxy for ws-api's tests, on Python's
http.server (auth_peer.js is the same on Node's http, sharing no code):

- GET /<name>: the file <name> of DIR (a JWK set, say), read at each request.
- POST /connect: ws-api's `--auth proxy` call, `{"token", "server", "sid",
  "device"}`, answered by the token:
    user-<n>            {"result": {"user": "<n>"}}
    group-<n>-<g>       {"result": {"user": <n>, "groups": ["<g>"]}}
    expire-<n>          {"result": {"user": "<n>", "expire_at": now + 1}}
    refuse              403 {"error": {"message": "account suspended"}}
    broken              500, no JSON
    slow                {"result": {"user": "1"}} after 3 s
- GET /last: the last /connect body.

    python3 auth_peer.py DIR     # prints "listening on 127.0.0.1:PORT"
"""
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIR = sys.argv[1]
LAST = {"body": b"{}"}


def answer(token: str):
    """(status, body) for a /connect token."""
    kind, _, rest = token.partition("-")
    if kind == "user":
        return 200, {"result": {"user": rest}}
    if kind == "group":
        uid, _, group = rest.partition("-")
        return 200, {"result": {"user": int(uid), "groups": [group]}}
    if kind == "expire":
        return 200, {"result": {"user": rest, "expire_at": int(time.time()) + 1}}
    if kind == "refuse":
        return 403, {"error": {"message": "account suspended"}}
    if kind == "slow":
        time.sleep(3)
        return 200, {"result": {"user": "1"}}
    return 500, None


class Handler(BaseHTTPRequestHandler):
    def reply(self, status: int, body: bytes, kind="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/last":
            return self.reply(200, LAST["body"])
        path = os.path.join(DIR, os.path.basename(self.path))
        try:
            with open(path, "rb") as f:
                self.reply(200, f.read())
        except OSError:
            self.reply(404, b"not found", "text/plain")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/connect":
            return self.reply(404, b"not found", "text/plain")
        LAST["body"] = body
        status, doc = answer(json.loads(body)["token"])
        self.reply(status, b"oops" if doc is None else json.dumps(doc).encode(),
                   "text/plain" if doc is None else "application/json")

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
