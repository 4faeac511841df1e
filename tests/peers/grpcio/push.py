#!/usr/bin/env python3
"""One `BizMsgService.Push` from gRPC C-core (pip `grpcio`): a client of
ws-api that shares no code with tonic, for tests/push_idempotency.rs. The
stubs are ws_api.py's (generated from proto/ at import).

    push.py ADDR UID KEY PAYLOAD

Prints the reply as one JSON line, {"offset", "duplicate", "successCount"},
or {"error": "<status code name>", "details"} when the call fails (exit 0
either way: the test judges).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
from ws_api import pb, pb_grpc  # noqa: E402


def main():
    addr, uid, key, payload = sys.argv[1:5]
    msg = pb.BizMsg(bizCode="news", bizPayload=payload, uid=int(uid), idempotencyKey=key)
    with grpc.insecure_channel(addr) as channel:
        stub = pb_grpc.BizMsgServiceStub(channel)
        try:
            reply = stub.Push(msg, timeout=10)
        except grpc.RpcError as e:
            print(json.dumps({"error": e.code().name, "details": e.details()}))
            return
    print(json.dumps({
        "offset": reply.offset,
        "duplicate": reply.duplicate,
        "successCount": reply.successCount,
    }))


if __name__ == "__main__":
    main()
