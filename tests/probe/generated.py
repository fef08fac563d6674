"""Python stubs generated from proto/ by grpcio-tools, and a channel to a node: how a client
that is not Quiver's own reaches it (tests/probe/probe.py, tests/probe/reader.py)."""

import importlib
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc


def stubs(proto_root):
    out = tempfile.mkdtemp(prefix="quiver-stubs-")
    files = [os.path.join("quiver", "v1", f) for f in sorted(os.listdir(os.path.join(proto_root, "quiver", "v1")))]
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    code = protoc.main(["protoc", f"-I{proto_root}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", *files])
    if code != 0:
        sys.exit(f"protoc failed ({code})")
    sys.path.insert(0, out)
    mods = {}
    for name in ("types", "raft", "admin", "offline", "features"):
        mods[name] = importlib.import_module(f"quiver.v1.{name}_pb2")
        mods[name + "_grpc"] = importlib.import_module(f"quiver.v1.{name}_pb2_grpc")
    return mods


def channel(endpoint, ca=None, cert=None, key=None):
    """A channel to `endpoint` (host:port), over TLS trusting the CA file `ca` when given,
    with a client certificate when `cert` and `key` are."""
    if not ca:
        return grpc.insecure_channel(endpoint)
    root = open(ca, "rb").read()
    key = open(key, "rb").read() if key else None
    cert = open(cert, "rb").read() if cert else None
    creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=cert)
    return grpc.secure_channel(endpoint, creds)
