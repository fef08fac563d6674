"""A reader that is not Quiver's own: stubs generated from proto/ by grpcio-tools, no routing.

Reads `driver_stats:conv_rate` of drivers 1..N linearizably through each endpoint in turn,
for a number of rounds, and prints one JSON object: per endpoint, the reads answered, the
errors met (gRPC code and message), and the values of the last answer by driver id.
The tests (tests/serving.rs) decide what must hold.

    python3 reader.py --proto DIR --endpoint HOST:PORT [--endpoint ...] --drivers N [--rounds R]
"""

import argparse
import json

import grpc

from generated import channel, stubs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--proto", required=True)
    p.add_argument("--endpoint", action="append", required=True)
    p.add_argument("--drivers", type=int, required=True)
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    m = stubs(args.proto)
    features, types = m["features"], m["types"]
    entities = [
        features.EntityKey(keys={"driver_id": types.Value(int64_value=i)}) for i in range(1, args.drivers + 1)
    ]
    request = features.GetOnlineFeaturesRequest(
        project="rides",
        refs=types.FeatureRefs(refs=["driver_stats:conv_rate"]),
        entities=entities,
        consistency=features.LINEARIZABLE,
    )
    report = {}
    stubs_by_endpoint = {e: m["features_grpc"].FeatureServiceStub(channel(e)) for e in args.endpoint}
    for _ in range(args.rounds):
        for endpoint, stub in stubs_by_endpoint.items():
            seen = report.setdefault(endpoint, {"answered": 0, "errors": [], "values": {}})
            try:
                answer = stub.GetOnlineFeatures(request, timeout=10)
            except grpc.RpcError as e:
                seen["errors"].append(f"{e.code().name}: {e.details()}")
                continue
            seen["answered"] += 1
            for i, result in enumerate(answer.results):
                seen["values"][str(i + 1)] = result.values[0].value.float64_value
    print(json.dumps(report))


if __name__ == "__main__":
    main()
