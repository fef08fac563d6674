"""DuckDB's as-of join over the Parquet files that quiver-bench offline ingests into Quiver.

It gives Quiver's point-in-time retrieval a well-known yardstick: same files, same spine, same
semantics (the latest feature row at or before each spine time, null when older than the TTL,
every spine row kept). quiver-bench runs it after stopping its node; it is also runnable alone:

    python3 bench/duckdb_asof.py 'DATA_DIR/*.parquet' SPINE.parquet TTL_SECONDS

Prints one JSON object: seconds (the join, materialized), pandas_seconds (the join and the
answer fetched into a pandas DataFrame, null without pandas), peak_kib (this process's peak
resident memory, interpreter included), rows, matched (rows with a fresh feature row), threads,
version (DuckDB's).
"""

import json
import resource
import sys
import time

import duckdb


def quoted(text):
    return "'" + text.replace("'", "''") + "'"


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    data, spine, ttl_secs = quoted(sys.argv[1]), quoted(sys.argv[2]), int(sys.argv[3])
    con = duckdb.connect()
    # The progress bar of long queries would be printed into the JSON on stdout.
    con.execute("SET enable_progress_bar = false")
    columns = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM read_parquet({data})").fetchall()]
    features = [c for c in columns if c not in ("driver_id", "event_timestamp")]
    # ASOF cannot take the TTL as a second inequality, so a stale match is nulled afterwards;
    # a WHERE would drop the spine row instead.
    fresh = f"epoch_us(f.event_timestamp) > epoch_us(s.event_timestamp) - {ttl_secs * 1_000_000}"
    picked = ", ".join(f'CASE WHEN {fresh} THEN f."{c}" END AS "{c}"' for c in features)
    query = f"""
        CREATE TABLE training AS
        SELECT s.*, {picked}, CASE WHEN {fresh} THEN f.event_timestamp END AS feature_ts
        FROM read_parquet({spine}) s
        ASOF LEFT JOIN read_parquet({data}) f
          ON s.driver_id = f.driver_id AND s.event_timestamp >= f.event_timestamp
    """
    started = time.perf_counter()
    con.execute(query)
    rows, matched = con.execute("SELECT count(*), count(feature_ts) FROM training").fetchone()
    seconds = time.perf_counter() - started
    # The join's peak, before a DataFrame adds to it.
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    # What a data scientist waits for: the same answer as a pandas DataFrame (the join's time
    # plus the fetch), where pandas is installed.
    try:
        import pandas  # noqa: F401

        fetched = time.perf_counter()
        con.execute("SELECT * FROM training").df()
        pandas_seconds = seconds + time.perf_counter() - fetched
    except ImportError:
        pandas_seconds = None
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    print(json.dumps({"seconds": seconds, "pandas_seconds": pandas_seconds, "peak_kib": peak_kib, "rows": rows,
                      "matched": matched, "threads": threads, "version": duckdb.__version__}))


if __name__ == "__main__":
    main()
