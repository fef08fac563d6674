"""Quiver's Python client (`import quiver`) measured the way the Rust client is, run by
quiver-bench when its Python (QUIVER_BENCH_PYTHON, default python3) has the package:

    python3 bench/python_client.py online ENDPOINT ENTITIES SECONDS
    python3 bench/python_client.py history ENDPOINT SPINE.parquet

online: one client in a closed loop reading the bench project's vector `all` (10 features),
linearizable, for 1 and for 100 random entities of ENTITIES: requests/s, p50 and p99 µs.
history: the point-in-time training set of the spine into a pandas DataFrame
(`get_historical_features(...).to_pandas()`, the spine read from its file first): seconds, rows.
Prints one JSON object.
"""

import json
import random
import sys
import time

import pyarrow.parquet as pq

import quiver


def online(endpoint, entities, seconds):
    client = quiver.Client(endpoint, project="bench")
    rng = random.Random(7)
    figures = {}
    for per in (1, 100):
        latencies = []
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            keys = [{"driver_id": rng.randrange(entities)} for _ in range(per)]
            sent = time.perf_counter()
            client.get_online_features(vector="all", entities=keys)
            latencies.append(time.perf_counter() - sent)
        elapsed = time.perf_counter() - started
        latencies.sort()
        at = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6
        figures[str(per)] = {"requests": len(latencies), "requests_per_sec": len(latencies) / elapsed,
                             "p50_us": at(0.5), "p99_us": at(0.99)}
    return figures


def history(endpoint, spine_path):
    client = quiver.Client(endpoint, project="bench")
    spine = pq.read_table(spine_path)
    started = time.perf_counter()
    frame = client.get_historical_features(spine, vector="all").to_pandas()
    return {"seconds": time.perf_counter() - started, "rows": len(frame)}


def main():
    match sys.argv[1:]:
        case ["online", endpoint, entities, seconds]:
            print(json.dumps(online(endpoint, int(entities), float(seconds))))
        case ["history", endpoint, spine]:
            print(json.dumps(history(endpoint, spine)))
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main()
