"""Quiver from Python, the way a data scientist works: define features, ingest history, build a
point-in-time training set from a pandas spine, look at it, then serve the same features online.

    python3 -m pip install ./python pandas
    quiver-node --data-dir ./quiver-data &            # or QUIVER_ENDPOINT=http://node:7070
    python3 examples/quickstart.py

Run from the repository's root (the node reads the Parquet file from its own disk).
"""

from pathlib import Path

import pandas as pd

import quiver

examples = Path(__file__).resolve().parent
client = quiver.Client(project="rides")  # QUIVER_ENDPOINT, QUIVER_TOKEN and QUIVER_CA are honoured

# 1. Define: entities, feature sets and vectors, as YAML (a dict works too).
for change in client.apply(examples / "rides.yaml"):
    print(f"{change['kind']} {change['name']}: {change['action']}")

# 2. Ingest history: the offline store keeps every row, the online store the latest per driver.
report = client.ingest("driver_stats", examples / "driver_stats.parquet")
print(f"ingested {report['rows']} rows ({len(report['duplicates'])} files already there)")

# 3. A training set: for each spine row, the features as they were at its time, never later.
spine = pd.read_csv(examples / "driver_spine.csv", parse_dates=["event_timestamp"])
training = client.get_historical_features(spine, vector="driver_model_v1", save_as="driver_training").to_pandas()

# 4. Look at it.
print(training.head())
print(training.describe())

# 5. Serve: the latest values, as a model would ask for them at prediction time.
online = client.get_online_features(vector="driver_model_v1", entities=[{"driver_id": 1001}, {"driver_id": 1002}],
                                    metadata=True)
print(online.to_pandas())
