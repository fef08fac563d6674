"""A real quiver-node for the tests: started on free loopback ports in a fresh data dir,
stopped at the end. QUIVER_NODE_BIN names the binary (default: the workspace's debug build)."""

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RIDES = ROOT / "examples" / "rides.yaml"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, data_dir, extra=()):
        binary = os.environ.get("QUIVER_NODE_BIN", str(ROOT / "target" / "debug" / "quiver-node"))
        self.port, self.http = _free_port(), _free_port()
        self.data_dir = Path(data_dir)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUIVER_")}
        self.log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "wb")
        self.process = subprocess.Popen(
            [binary, "--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{self.port}",
             "--http", f"127.0.0.1:{self.http}", *extra],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"quiver-node did not become healthy; see {self.log.name}")
            time.sleep(0.1)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="session")
def node(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("quiver") / "node")
    yield n
    n.stop()


@pytest.fixture(scope="session")
def auth_node(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("quiver-auth") / "node", ["--auth"])
    yield n
    n.stop()
