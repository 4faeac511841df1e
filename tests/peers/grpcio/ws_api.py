#!/usr/bin/env python3
"""An independent ws-api on gRPC C-core (pip `grpcio`), for integration tests.

It proves ws-gateway works against a gRPC server that is not tonic. The
semantics follow the reference Rust ws-api (ws-api/src/service.rs, biz.rs)
with in-memory presence and the echo handler. Python stubs are generated at
start-up from proto/ into a temporary directory; nothing generated is kept.

    ws_api.py [--listen 127.0.0.1:0]

Prints `ws-api listening on <ip:port>` to stdout once bound, then serves until
SIGTERM/SIGINT.
"""

import argparse
import importlib
import os
import queue
import signal
import sys
import tempfile
import threading
from concurrent import futures

import grpc

PROTO_DIR = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "proto")
)


def log(*parts):
    print("ws-api(grpcio):", *parts, file=sys.stderr, flush=True)


def load_stubs():
    """Runs grpc_tools.protoc on proto/ and imports the result."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory(prefix="wsapi-grpcio-") as out:
        rc = protoc.main([
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            os.path.join(PROTO_DIR, "wsgateway.proto"),
            os.path.join(PROTO_DIR, "wsapi.proto"),
        ])
        if rc != 0:
            sys.exit(f"protoc failed ({rc}) on {PROTO_DIR}")
        # wsapi_pb2 does `import wsgateway_pb2`: the directory must be on the path.
        sys.path.insert(0, out)
        try:
            gw = importlib.import_module("wsgateway_pb2")
            api = importlib.import_module("wsapi_pb2")
            api_grpc = importlib.import_module("wsapi_pb2_grpc")
        finally:
            sys.path.remove(out)
    return gw, api, api_grpc


gw_pb, pb, pb_grpc = load_stubs()

_END = object()  # ends a stream's response generator


class Stream:
    """One ExchangeMsg stream: the queue its response generator drains."""

    def __init__(self):
        self.queue = queue.Queue()

    def send(self, msg):
        self.queue.put(msg)

    def close(self):
        self.queue.put(_END)


class Backend:
    """Presence and the stream registry, behind one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.streams = {}   # server -> Stream (a newer one replaces an older)
        self.by_uid = {}    # uid -> set of (server, sid)
        self.by_session = {}  # (server, sid) -> uid
        self.groups = {}    # group -> set of (server, sid)

    # Streams.
    def register(self, server, stream):
        with self.lock:
            self.streams[server] = stream

    def unregister(self, server, stream):
        with self.lock:
            if self.streams.get(server) is stream:
                del self.streams[server]

    def all_streams(self):
        with self.lock:
            return list(self.streams.items())

    def to_session(self, key, msg):
        """Queues `msg` on the stream of `key`'s server; whether there was one."""
        with self.lock:
            stream = self.streams.get(key[0])
        if stream is None:
            return False
        stream.send(msg)
        return True

    # Presence.
    def connect(self, uid, key):
        with self.lock:
            self.by_uid.setdefault(uid, set()).add(key)
            self.by_session[key] = uid

    def disconnect(self, key):
        with self.lock:
            uid = self.by_session.pop(key, None)
            if uid is None:
                return
            for group in list(self.groups):
                members = self.groups[group]
                members.discard(key)
                if not members:
                    del self.groups[group]
            keys = self.by_uid.get(uid)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_uid[uid]

    def sessions(self, uid):
        with self.lock:
            return list(self.by_uid.get(uid, ()))

    def online(self):
        with self.lock:
            return len(self.by_session)

    def set_member(self, group, key, member):
        with self.lock:
            if member:
                self.groups.setdefault(group, set()).add(key)
            else:
                members = self.groups.get(group)
                if members is not None:
                    members.discard(key)
                    if not members:
                        del self.groups[group]

    def group_size(self, group):
        with self.lock:
            return len(self.groups.get(group, ()))


def uid_for_token(token: bytes) -> int:
    if token and all(0x30 <= b <= 0x39 for b in token):
        uid = int(token)
        if uid < 1 << 64:
            return uid
    h = 0xCBF29CE484222325
    for b in token:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h & ((1 << 63) - 1)


def protocol(code, payload):
    return gw_pb.Protocol(type=code, payload=payload.encode())


class Exchange(pb_grpc.ExchangeServiceServicer):
    def __init__(self, backend):
        self.b = backend

    def ExchangeMsg(self, request_iterator, context):
        identity = dict(context.invocation_metadata()).get("x-gateway-ip")
        log(f"exchange stream opened identity={identity or '?'}")
        stream = Stream()
        registered = [None]
        if identity:
            # Registered before anything is sent: once the gateway sees the
            # response headers, pushes reach it.
            self.b.register(identity, stream)
            registered[0] = identity
        # Cancellation, deadline or server stop: end the generator.
        context.add_callback(stream.close)

        def read():
            try:
                for msg in request_iterator:
                    if registered[0] is None and msg.server:
                        self.b.register(msg.server, stream)
                        registered[0] = msg.server
                    stream.send(msg)  # the echo handler
            except Exception:  # the RPC failed or was cancelled
                pass
            finally:
                stream.close()

        threading.Thread(target=read, name="exchange-reader", daemon=True).start()
        try:
            while True:
                msg = stream.queue.get()
                if msg is _END:
                    return
                yield msg
        finally:
            if registered[0] is not None:
                self.b.unregister(registered[0], stream)
            log(f"exchange stream closed identity={registered[0] or '?'}")

    def Connect(self, request, context):
        token = request.token
        if not token:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing token")
        if token.startswith(b"deny"):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "token denied")
        uid = uid_for_token(token)
        self.b.connect(uid, (request.server, request.sid))
        return pb.ConnectReply(uid=uid)

    def Disconnect(self, request, context):
        self.b.disconnect((request.server, request.sid))
        return pb.DisconnectReply()

    def KeepAlive(self, request, context):
        return pb.KeepAliveReply()


class Biz(pb_grpc.BizMsgServiceServicer):
    def __init__(self, backend):
        self.b = backend

    def _to_every_core(self, sid, group, payload):
        for server, stream in self.b.all_streams():
            stream.send(pb.Msg(server=server, sid=sid, group=group, payload=payload))

    def Push(self, request, context):
        payload = protocol(request.bizCode, request.bizPayload)
        n = 0
        for server, sid in self.b.sessions(request.uid):
            n += self.b.to_session((server, sid), pb.Msg(server=server, sid=sid, payload=payload))
        return pb.PushBizMsgReply(successCount=n)

    def Kick(self, request, context):
        if request.sid:
            targets = [(request.server, request.sid)]
        else:
            targets = self.b.sessions(request.uid)
        close = pb.Close(code=request.code or 1000, reason=request.reason)
        n = 0
        for server, sid in targets:
            msg = pb.Msg(server=server, sid=sid, control=pb.Control(close=close))
            n += self.b.to_session((server, sid), msg)
        return pb.KickReply(closed=n)

    def _membership(self, request, context, join):
        if not request.group:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty group")
        n = 0
        for server, sid in self.b.sessions(request.uid):
            if join:
                control = pb.Control(join=pb.Join(group=request.group))
            else:
                control = pb.Control(leave=pb.Leave(group=request.group))
            if self.b.to_session((server, sid), pb.Msg(server=server, sid=sid, control=control)):
                self.b.set_member(request.group, (server, sid), join)
                n += 1
        return pb.GroupReply(sessions=n)

    def JoinGroup(self, request, context):
        return self._membership(request, context, True)

    def LeaveGroup(self, request, context):
        return self._membership(request, context, False)

    def PushGroup(self, request, context):
        if not request.group:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty group")
        members = self.b.group_size(request.group)
        self._to_every_core("", request.group, protocol(request.bizCode, request.bizPayload))
        return pb.PushBizMsgReply(successCount=members)

    def Broadcast(self, request, context):
        online = self.b.online()
        self._to_every_core("*", "", protocol(request.bizCode, request.bizPayload))
        return pb.PushBizMsgReply(successCount=online)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument(
        "--workers", type=int, default=256,
        help="thread pool size; every open ExchangeMsg stream holds one thread",
    )
    args = parser.parse_args()

    import google.protobuf
    log(f"grpcio {grpc.__version__}, protobuf {google.protobuf.__version__}")

    backend = Backend()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    pb_grpc.add_ExchangeServiceServicer_to_server(Exchange(backend), server)
    pb_grpc.add_BizMsgServiceServicer_to_server(Biz(backend), server)
    port = server.add_insecure_port(args.listen)
    if port == 0:
        sys.exit(f"cannot listen on {args.listen}")
    host = args.listen.rsplit(":", 1)[0]
    server.start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"ws-api listening on {host}:{port}", flush=True)

    while not stop.wait(0.5):
        pass
    log("stopping")
    server.stop(grace=None).wait(5)
    # Belt and braces: no response generator may keep a pool thread waiting.
    for _, stream in backend.all_streams():
        stream.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
