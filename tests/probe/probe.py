"""A hostile client that is not Quiver's own: stubs generated from proto/ by grpcio-tools.

Calls every RPC between nodes with a garbage body, and the public API with a large body, and
prints one JSON object: each call's gRPC status code name ("OK" when it was answered).
The tests (tests/trust.rs) decide what each configuration must answer.

    python3 probe.py --proto DIR --endpoint HOST:PORT [--ca PEM [--cert PEM --key PEM]]
                     [--token T] [--secret FILE] [--cluster ID] [--only METHOD] [--public-bytes N]
"""

import argparse
import json

import grpc

from generated import channel, stubs

# A bincode decoder given this reads a length far past the end and fails.
GARBAGE = b"\xff" * 64


def code_of(call):
    try:
        result = call()
        if hasattr(result, "__next__"):
            next(result)
        return "OK"
    except StopIteration:
        return "OK"
    except grpc.RpcError as e:
        return e.code().name


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--proto", required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--token")
    p.add_argument("--secret")
    p.add_argument("--cluster", help="the cluster id a member's RPC names (x-quiver-cluster)")
    p.add_argument("--finalize", action="store_true", help="also finalize an upgrade (a cluster admin's RPC)")
    p.add_argument("--only")
    p.add_argument("--public-bytes", type=int, default=0)
    p.add_argument("--cancel", type=int, help="also cancel shard operation N (a cluster admin's RPC)")
    args = p.parse_args()
    m = stubs(args.proto)
    ch = channel(args.endpoint, args.ca, args.cert, args.key)
    metadata = []
    if args.token:
        metadata.append(("authorization", f"Bearer {args.token}"))
    if args.secret:
        metadata.append(("x-quiver-member", open(args.secret).read().strip()))
    if args.cluster:
        metadata.append(("x-quiver-cluster", args.cluster))
    raft = m["raft_grpc"].RaftServiceStub(ch)
    admin = m["admin_grpc"].AdminServiceStub(ch)
    offline = m["offline_grpc"].OfflineServiceStub(ch)
    msg = m["raft"].RaftMessage(group_id=0, payload=GARBAGE)
    calls = {
        "AppendEntries": lambda: raft.AppendEntries(msg, metadata=metadata, timeout=10),
        "Vote": lambda: raft.Vote(msg, metadata=metadata, timeout=10),
        "InstallSnapshot": lambda: raft.InstallSnapshot(msg, metadata=metadata, timeout=10),
        "Propose": lambda: raft.Propose(msg, metadata=metadata, timeout=10),
        "Campaign": lambda: raft.Campaign(msg, metadata=metadata, timeout=10),
        "ReadCut": lambda: raft.ReadCut(msg, metadata=metadata, timeout=10),
        "ReadRows": lambda: raft.ReadRows(msg, metadata=metadata, timeout=10),
        # A loopback address nobody listens on: were it added, no traffic leaves the machine.
        "Join": lambda: admin.Join(m["admin"].JoinRequest(address="127.0.0.1:9"), metadata=metadata, timeout=10),
        "MetaReadIndex": lambda: admin.MetaReadIndex(m["admin"].MetaReadIndexRequest(), metadata=metadata, timeout=10),
        "JoinPart": lambda: offline.JoinPart(
            m["offline"].JoinPartRequest(plan=GARBAGE, spine=GARBAGE), metadata=metadata, timeout=10
        ),
    }
    if args.public_bytes:
        features = m["features_grpc"].FeatureServiceStub(ch)
        big = m["features"].WriteFeaturesRequest(project="x" * args.public_bytes)
        calls["WriteFeatures"] = lambda: features.WriteFeatures(big, metadata=metadata, timeout=30)
    if args.cancel:
        cancel = m["admin"].CancelShardOperationRequest(id=args.cancel)
        calls["CancelShardOperation"] = lambda: admin.CancelShardOperation(cancel, metadata=metadata, timeout=10)
    if args.finalize:
        finalize = m["admin"].FinalizeUpgradeRequest()
        calls["FinalizeUpgrade"] = lambda: admin.FinalizeUpgrade(finalize, metadata=metadata, timeout=10)
    if args.only:
        calls = {args.only: calls[args.only]}
    print(json.dumps({name: code_of(call) for name, call in calls.items()}))


if __name__ == "__main__":
    main()
