#!/usr/bin/env python3
"""A gRPC client that knows no .proto: it learns the service from the
server's reflection (grpcio-reflection, gRPC C-core), like grpcurl, and
makes one unary call with a JSON body, printing the JSON answer. Over TLS
with `--ca CA.pem`, and mTLS with `--cert CERT.pem --key KEY.pem` too;
`--bearer SECRET` sends `authorization: Bearer SECRET`. A failed call
prints `CODE: details` on stderr and exits 1.

    python3 tests/peers/reflection/call.py 127.0.0.1:8081 wsapi.BizMsgService/Push \\
        '{"uid": "42", "bizCode": "notice", "bizPayload": "hello"}'
"""
import sys

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import \
    ProtoReflectionDescriptorDatabase


def channel_to(addr: str, opts: dict[str, str]):
    """Plain, or TLS with `--ca CA [--cert CERT --key KEY]` (mTLS)."""
    if "--ca" not in opts:
        return grpc.insecure_channel(addr)
    read = lambda k: open(opts[k], "rb").read() if k in opts else None
    creds = grpc.ssl_channel_credentials(read("--ca"), read("--key"), read("--cert"))
    return grpc.secure_channel(addr, creds)


def main(addr: str, method: str, body: str, *flags: str) -> int:
    service, name = method.split("/")
    opts = dict(zip(flags[0::2], flags[1::2]))
    metadata = [("authorization", f"Bearer {opts['--bearer']}")] if "--bearer" in opts else None
    with channel_to(addr, opts) as channel:
        pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        rpc = pool.FindServiceByName(service).FindMethodByName(name)
        request = message_factory.GetMessageClass(rpc.input_type)
        response = message_factory.GetMessageClass(rpc.output_type)
        call = channel.unary_unary(f"/{service}/{name}",
                                   request_serializer=request.SerializeToString,
                                   response_deserializer=response.FromString)
        try:
            answer = call(json_format.Parse(body, request()), timeout=10, metadata=metadata)
        except grpc.RpcError as e:
            print(f"{e.code().name}: {e.details()}", file=sys.stderr)
            return 1
        print(json_format.MessageToJson(answer, indent=None))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
