#!/usr/bin/env python3
"""A gRPC client that knows no .proto: it learns the service from the
server's reflection (grpcio-reflection, gRPC C-core), like grpcurl, and
makes one unary call with a JSON body, printing the JSON answer.

    python3 tests/peers/reflection/call.py 127.0.0.1:8081 wsapi.BizMsgService/Push \\
        '{"uid": "42", "bizCode": "notice", "bizPayload": "hello"}'
"""
import sys

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import \
    ProtoReflectionDescriptorDatabase


def main(addr: str, method: str, body: str) -> int:
    service, name = method.split("/")
    with grpc.insecure_channel(addr) as channel:
        pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        rpc = pool.FindServiceByName(service).FindMethodByName(name)
        request = message_factory.GetMessageClass(rpc.input_type)
        response = message_factory.GetMessageClass(rpc.output_type)
        call = channel.unary_unary(f"/{service}/{name}",
                                   request_serializer=request.SerializeToString,
                                   response_deserializer=response.FromString)
        answer = call(json_format.Parse(body, request()), timeout=10)
        print(json_format.MessageToJson(answer, indent=None))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
