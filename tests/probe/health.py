"""Health checks and server reflection as grpcurl and Kubernetes use them, from a client that
is not Quiver's own: raw grpcio calls, no generated stubs, no Quiver code.

Prints one JSON object: the health status of the node as a whole ("SERVING", "NOT_SERVING"
or the gRPC code that refused the check), and the services reflection lists (or the code
that refused it).

    python3 health.py --endpoint HOST:PORT [--token T]
"""

import argparse
import json
import re

import grpc

STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def raw(channel, path, stream=False):
    same = lambda b: b  # noqa: E731 - requests and answers stay bytes
    if stream:
        return channel.stream_stream(path, request_serializer=same, response_deserializer=same)
    return channel.unary_unary(path, request_serializer=same, response_deserializer=same)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--token")
    args = p.parse_args()
    channel = grpc.insecure_channel(args.endpoint)
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []
    out = {}
    try:
        # HealthCheckRequest{service: ""} is the empty message; the answer's field 1 is the status.
        answer = raw(channel, "/grpc.health.v1.Health/Check")(b"", metadata=metadata, timeout=10)
        out["health"] = STATUS.get(answer[1] if len(answer) > 1 else 0, "?")
    except grpc.RpcError as e:
        out["health"] = e.code().name
    try:
        # ServerReflectionRequest{list_services: ""}: field 7, an empty string.
        answers = raw(channel, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", stream=True)(
            iter([b"\x3a\x00"]), metadata=metadata, timeout=10
        )
        names = set()
        for answer in answers:
            names.update(m.decode() for m in re.findall(rb"[a-z]+\.[a-z0-9.]+\.[A-Z][A-Za-z]+", answer))
        out["services"] = sorted(names)
    except grpc.RpcError as e:
        out["services"] = e.code().name
    print(json.dumps(out))


if __name__ == "__main__":
    main()
