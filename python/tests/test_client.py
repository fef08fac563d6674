"""The Python client against a real node: definitions, pushes of pandas and pyarrow data,
online reads into Arrow, and every kind of bad input raising its exception with a message
that names what is wrong."""

import datetime
import os
import signal
import socket
import sys
import threading
import time
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import quiver
from conftest import RIDES, ROOT


@pytest.fixture(scope="module")
def client(node):
    c = quiver.Client(node.endpoint, project="rides")
    c.apply(str(RIDES))
    return c


def test_apply_says_what_changed_and_is_idempotent(node, tmp_path):
    c = quiver.Client(node.endpoint)
    changes = c.apply(Path(RIDES))
    assert {"kind": "feature_set", "name": "driver_stats", "action": "created"} in changes, changes
    assert all(ch["action"] == "unchanged" for ch in c.apply(str(RIDES))), "applying again changes nothing"
    assert "rides" in c.projects()
    defs = {"project": "shop", "entities": [{"name": "item", "join_keys": [{"name": "item_id", "type": "string"}]}],
            "feature_sets": [{"name": "prices", "entity": "item", "timestamp": "ts",
                              "features": [{"name": "price", "type": "float64"}]}]}
    assert any(ch["name"] == "prices" and ch["action"] == "created" for ch in c.apply(defs))


def test_a_pandas_push_reads_back_typed_with_statuses_and_event_times(client):
    now = pd.Timestamp.now(tz="UTC").floor("s")
    df = pd.DataFrame({
        "driver_id": [1, 2, 3],
        "event_timestamp": [now, now, now - pd.Timedelta(minutes=1)],
        "conv_rate": [0.5, 0.25, None],
        "avg_daily_trips": [10, 20, 30],
        "ignored_column": ["x", "y", "z"],
    })
    assert client.push("driver_stats", df) == 3
    table = client.get_online_features(
        features=["driver_stats:conv_rate", "driver_stats:avg_daily_trips"],
        entities=[{"driver_id": 1}, {"driver_id": 3}, {"driver_id": 99}],
        metadata=True)
    assert isinstance(table, pa.Table)
    assert table.column_names == [
        "driver_id", "conv_rate", "conv_rate__status", "conv_rate__event_timestamp",
        "avg_daily_trips", "avg_daily_trips__status", "avg_daily_trips__event_timestamp"]
    assert table.schema.field("conv_rate").type == pa.float64()
    assert table.schema.field("avg_daily_trips").type == pa.int64()
    assert table.column("driver_id").to_pylist() == [1, 3, 99]
    assert table.column("conv_rate").to_pylist() == [0.5, None, None]
    assert table.column("avg_daily_trips").to_pylist() == [10, 30, None]
    assert table.column("conv_rate__status").to_pylist() == ["PRESENT", "PRESENT", "NOT_FOUND"]
    times = table.column("conv_rate__event_timestamp").to_pylist()
    assert times[0] == now.to_pydatetime() and times[2] is None
    frame = table.to_pandas()
    assert list(frame["avg_daily_trips"][:2]) == [10, 30]


def test_entities_as_a_table_and_a_vector_and_stale_reads(client):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    pushed = pa.table({"driver_id": pa.array([7, 8], pa.int32()),
                       "event_timestamp": pa.array([now, now], pa.timestamp("ms", tz="Europe/Amsterdam")),
                       "conv_rate": [0.7, 0.8], "acc_rate": [0.9, 0.95], "avg_daily_trips": [7, 8]})
    assert client.push("driver_stats", pushed) == 2
    spine = pd.DataFrame({"driver_id": [8, 7], "label": [1, 0]})
    table = client.get_online_features(vector="driver_model_v1", entities=spine)
    assert table.column_names == ["driver_id", "conv_rate", "acc_rate", "avg_daily_trips"]
    assert table.column("conv_rate").to_pylist() == [0.8, 0.7]
    stale = client.get_online_features(vector="driver_model_v1", entities=[{"driver_id": 7}], consistency="stale")
    assert stale.column("avg_daily_trips").to_pylist() in ([7], [None])


def test_bad_input_raises_its_exception_naming_the_problem_and_writes_nothing(client):
    read = lambda **kw: client.get_online_features(entities=[{"driver_id": 1}], **kw)
    with pytest.raises(quiver.NotFoundError, match="no_such_feature") as e:
        read(features=["driver_stats:no_such_feature"])
    assert e.value.code.startswith("Q")
    with pytest.raises(quiver.NotFoundError, match="nope"):
        read(vector="nope")
    with pytest.raises(quiver.InvalidArgumentError, match="either"):
        read()
    with pytest.raises(quiver.InvalidArgumentError, match="consistency 'eventual'"):
        read(features=["driver_stats:conv_rate"], consistency="eventual")
    with pytest.raises(quiver.InvalidArgumentError, match="driver_id"):
        client.get_online_features(features=["driver_stats:conv_rate"], entities=[{"driver_id": [1]}])

    now = pd.Timestamp.now(tz="UTC")
    wrong_type = pd.DataFrame({"driver_id": [500, 501], "event_timestamp": [now, now], "conv_rate": ["high", "low"]})
    with pytest.raises(quiver.InvalidArgumentError, match="conv_rate"):
        client.push("driver_stats", wrong_type)
    missing_time = pd.DataFrame({"driver_id": [500], "conv_rate": [0.1]})
    with pytest.raises(quiver.InvalidArgumentError, match="event_timestamp"):
        client.push("driver_stats", missing_time)
    with pytest.raises(quiver.NotFoundError, match="driver_statz"):
        client.push("driver_statz", pd.DataFrame({"driver_id": [500]}))
    with pytest.raises(quiver.InvalidArgumentError, match="pandas or pyarrow"):
        client.push("driver_stats", [{"driver_id": 500}])
    table = client.get_online_features(features=["driver_stats:conv_rate"], entities=[{"driver_id": 500}], metadata=True)
    assert table.column("conv_rate__status").to_pylist() == ["NOT_FOUND"], "no refused row was written"


def test_tokens_are_checked_and_personal_data_needs_the_grant(auth_node):
    admin = (auth_node.data_dir / "admin.token").read_text().strip()
    with pytest.raises(quiver.UnauthenticatedError):
        quiver.Client(auth_node.endpoint, token="qvt_wrong").projects()
    root = quiver.Client(auth_node.endpoint, token=admin)
    root.apply(str(RIDES))
    now = pd.Timestamp.now(tz="UTC")
    root.push("driver_stats", pd.DataFrame({"driver_id": [1], "event_timestamp": [now], "city": ["Oslo"]}), project="rides")
    viewer = quiver.Client(auth_node.endpoint, project="rides", token=issue_token(auth_node, admin, "viewer"))
    city = {"features": ["driver_stats:city"], "entities": [{"driver_id": 1}]}
    with pytest.raises(quiver.PermissionDeniedError, match="city"):
        viewer.get_online_features(**city)
    with pytest.raises(quiver.PermissionDeniedError, match="rides"):
        viewer.push("driver_stats", pd.DataFrame({"driver_id": [2], "event_timestamp": [now]}))
    granted = quiver.Client(auth_node.endpoint, project="rides", token=issue_token(auth_node, admin, "pii", "--pii"))
    assert granted.get_online_features(**city).column("city").to_pylist() == ["Oslo"]


def issue_token(node, admin, name, *extra):
    """A viewer's token on rides, issued with quiverctl."""
    out = subprocess.run(
        [str(ROOT / "target" / "debug" / "quiverctl"), "--endpoint", node.endpoint, "--token", admin,
         "--project", "rides", "token", "create", "--name", name, "--role", "viewer", *extra],
        check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def test_the_environment_gives_the_endpoint_and_unreachable_nodes_raise_unavailable(node, monkeypatch):
    monkeypatch.setenv("QUIVER_ENDPOINT", node.endpoint)
    monkeypatch.setenv("QUIVER_PROJECT", "rides")
    assert quiver.Client().endpoint == node.endpoint
    with pytest.raises(quiver.UnavailableError, match="127.0.0.1:9"):
        quiver.Client("http://127.0.0.1:9", timeout=2).projects()


def test_training_sets_from_pandas_spines_in_any_zone_equal_the_clis(node, tmp_path):
    c = quiver.Client(node.endpoint, project="history")
    c.apply(RIDES.read_text().replace("project: rides", "project: history"))
    report = c.ingest("driver_stats", ROOT / "examples" / "driver_stats.parquet")
    assert report["done"] and report["rows"] == 160 and report["files_written"] > 0, report
    assert c.ingest("driver_stats", str(ROOT / "examples" / "driver_stats.parquet"))["duplicates"], "the same file again adds nothing"

    spine = pd.read_csv(ROOT / "examples" / "driver_spine.csv", parse_dates=["event_timestamp"])
    assert str(spine["event_timestamp"].dt.tz) == "UTC"
    features = ["conv_rate", "acc_rate", "avg_daily_trips"]
    utc = c.get_historical_features(spine, vector="driver_model_v1")
    assert utc.num_rows == len(spine) and utc.column("label").to_pylist() == list(spine["label"])
    assert sum(v is not None for v in utc.column("conv_rate").to_pylist()) > 0, "some spine rows find a value"
    amsterdam = spine.assign(event_timestamp=spine["event_timestamp"].dt.tz_convert("Europe/Amsterdam"))
    naive = spine.assign(event_timestamp=spine["event_timestamp"].dt.tz_localize(None))
    for other in (amsterdam, naive):
        same = c.get_historical_features(other, vector="driver_model_v1")
        assert same.select(features).equals(utc.select(features)), "a spine's zone does not move its times"

    out = tmp_path / "cli.parquet"
    cli = subprocess.run(
        [str(ROOT / "target" / "debug" / "quiverctl"), "--endpoint", node.endpoint, "--project", "history", "history",
         "--vector", "driver_model_v1", "--spine", str(ROOT / "examples" / "driver_spine.csv"), "--out", str(out),
         "--short-names"], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    by_cli = pq.read_table(out)
    for f in features:
        assert by_cli.column(f).to_pylist() == utc.column(f).to_pylist(), f

    batches = c.iter_historical_features(spine, vector="driver_model_v1", save_as="train_py")
    assert batches.rows == len(spine) and "conv_rate" in batches.schema.names
    assert sum(b.num_rows for b in batches) == len(spine)
    saved = [d for d in c.datasets() if d["name"] == "train_py"]
    assert saved and saved[0]["rows"] == len(spine), c.datasets()
    full = c.get_historical_features(spine, features=["driver_stats:conv_rate"], full_feature_names=True)
    assert "driver_stats:conv_rate" in full.column_names

    with pytest.raises(quiver.InvalidArgumentError, match="event_timestamp"):
        c.get_historical_features(spine.drop(columns=["event_timestamp"]), vector="driver_model_v1")
    with pytest.raises(quiver.NotFoundError, match="driver_model_v9"):
        c.get_historical_features(spine, vector="driver_model_v9")
    with pytest.raises(quiver.InvalidArgumentError, match="no rows"):
        c.get_historical_features(spine.iloc[0:0], vector="driver_model_v1")


def test_ctrl_c_stops_a_call_that_waits(tmp_path):
    # A peer that takes connections and never answers: every call to it waits.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
    threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    # A call blind to signals would end in UnavailableError at its timeout instead.
    with pytest.raises(KeyboardInterrupt):
        quiver.Client(endpoint, timeout=30).projects()
    silent.close()


def test_the_quickstart_example_runs_as_written(node):
    env = {**os.environ, "QUIVER_ENDPOINT": node.endpoint}
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], capture_output=True, text=True,
                         env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "ingested 160 rows" in run.stdout and "conv_rate" in run.stdout, run.stdout
    assert any(d["name"] == "driver_training" for d in quiver.Client(node.endpoint, project="rides").datasets())


def test_declarations_statistics_and_drift_as_tables(node):
    c = quiver.Client(node.endpoint, project="monitoring")
    c.apply(RIDES.read_text().replace("project: rides", "project: monitoring"))
    listed = c.list().to_pylist()
    assert {"kind": "feature_set", "name": "driver_stats", "version": 1, "owner": "ml-platform@example.com",
            "description": "Daily driver statistics"} in listed
    assert {r["name"] for r in listed if r["kind"] == "vector"} == {"driver_model_v1", "driver_model_v2"}
    stats_set = c.describe("feature_set", "driver_stats@1")
    assert [f["name"] for f in stats_set["features"]] == ["conv_rate", "acc_rate", "avg_daily_trips", "city"]
    assert c.describe("entity", "driver")["join_keys"] == [{"name": "driver_id", "type": "int64"}]
    with pytest.raises(quiver.NotFoundError, match="nope"):
        c.describe("vector", "nope")

    c.ingest("driver_stats", ROOT / "examples" / "driver_stats.parquet")
    deadline = time.monotonic() + 60
    while int((stats := c.stats("driver_stats")).schema.metadata[b"rows"]) < 160:
        assert time.monotonic() < deadline, f"the statistics worker summarized {stats.schema.metadata}"
        time.sleep(0.2)
    conv = next(f for f in stats.to_pylist() if f["feature"] == "conv_rate")
    assert conv["count"] + conv["nulls"] == 160 and conv["min"] <= conv["mean"] <= conv["max"], conv
    drift = c.drift(reference="..", current="..", vector="driver_model_v1")
    assert drift.column("feature").to_pylist() == [
        "driver_stats:conv_rate", "driver_stats:acc_rate", "driver_stats:avg_daily_trips"]
    assert drift.column("status").to_pylist() == ["ok"] * 3, "a window does not drift from itself"
    assert drift.column("psi").to_pylist() == [0.0] * 3 and drift.schema.metadata[b"status"] == b"ok"
    with pytest.raises(quiver.InvalidArgumentError, match="window 'yesterday'"):
        c.stats("driver_stats", window="yesterday")
    with pytest.raises(quiver.NotFoundError, match="driver_statz"):
        c.stats("driver_statz")
