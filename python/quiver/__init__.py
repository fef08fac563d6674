"""Quiver's Python client: define features once, serve them online, train on them offline.

    import quiver
    client = quiver.Client("http://127.0.0.1:7070", project="rides")
    client.apply("examples/rides.yaml")
    client.push("driver_stats", dataframe)
    table = client.get_online_features(features=["driver_stats:conv_rate"],
                                       entities=[{"driver_id": 1001}])
    table.to_pandas()

Calls go through the Rust client (routing, retries, TLS, tokens); tables cross as Arrow data
through the Arrow C data interface. Failures raise ``QuiverError`` or one of its subclasses,
whose ``code`` is Quiver's stable code and whose message names the row or field at fault.
"""

import json
import os

import pyarrow

from ._quiver import (
    Client as _Client,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    QuiverError,
    UnauthenticatedError,
    UnavailableError,
)

__all__ = [
    "Client",
    "QuiverError",
    "NotFoundError",
    "InvalidArgumentError",
    "PermissionDeniedError",
    "UnauthenticatedError",
    "UnavailableError",
]


_LIST_SCHEMA = pyarrow.schema([("kind", pyarrow.string()), ("name", pyarrow.string()), ("version", pyarrow.int64()),
                               ("owner", pyarrow.string()), ("description", pyarrow.string())])
_DRIFT_SCHEMA = pyarrow.schema([
    ("feature", pyarrow.string()), ("status", pyarrow.string()), ("psi", pyarrow.float64()),
    ("ks", pyarrow.float64()), ("js_distance", pyarrow.float64()), ("hellinger", pyarrow.float64()),
    ("tvd", pyarrow.float64()), ("reference_count", pyarrow.int64()), ("current_count", pyarrow.int64()),
    ("error", pyarrow.string())])


def _arrow(data, what):
    """Arrow data as is (pyarrow, polars, anything with ``__arrow_c_stream__``); a pandas
    DataFrame converted by pyarrow, its index left out."""
    if hasattr(data, "__arrow_c_stream__") and not _is_pandas(data):
        return data
    if _is_pandas(data):
        return pyarrow.Table.from_pandas(data, preserve_index=False)
    raise InvalidArgumentError(f"{what}: give a pandas or pyarrow table (or any Arrow data), not a {type(data).__name__}")


def _is_pandas(data):
    return type(data).__module__.startswith("pandas") and hasattr(data, "to_dict")


class Client(_Client):
    """A connection to a Quiver cluster through any of its nodes.

    ``endpoint`` (else ``QUIVER_ENDPOINT``, else ``http://127.0.0.1:7070``), ``project``
    (else ``QUIVER_PROJECT``, else the only project), ``token`` (else ``QUIVER_TOKEN``),
    ``ca`` a PEM file of the cluster's CA for ``https://`` (else ``QUIVER_CA``), ``timeout``
    in seconds per request.
    """

    def apply(self, definitions):
        """Applies definitions: a YAML file's path, YAML text, or a dict of the same shape.
        All or nothing, idempotent; returns the changes (dicts of kind, name, action)."""
        if isinstance(definitions, dict):
            text = json.dumps(definitions)
        elif isinstance(definitions, os.PathLike) or (isinstance(definitions, str) and "\n" not in definitions and os.path.exists(definitions)):
            with open(definitions, encoding="utf-8") as f:
                text = f.read()
        elif isinstance(definitions, str):
            text = definitions
        else:
            raise InvalidArgumentError(f"definitions: give a path, YAML text or a dict, not a {type(definitions).__name__}")
        return self._apply_text(text)

    def get_online_features(self, entities, features=None, vector=None, consistency="linearizable", project=None, metadata=False):
        """The latest values of ``features`` (``["set:feature", ...]``) or of ``vector`` for
        ``entities`` (a list of dicts of join keys, or a pandas/pyarrow table holding them),
        as a ``pyarrow.Table``: the join keys, then one column per feature. With
        ``metadata=True`` each feature also has ``<name>__status`` (PRESENT, NOT_FOUND,
        EXPIRED) and ``<name>__event_timestamp``. ``consistency="stale"`` reads any replica."""
        if not isinstance(entities, list):
            entities = _arrow(entities, "entities")
        return super().get_online_features(entities, features, vector, consistency, project, metadata)

    def ingest(self, feature_set, path, project=None):
        """Ingests a Parquet or CSV file, a directory of them or an ``s3://`` URL into
        ``feature_set``. The node reads the path: a local path must be on the node's machine.
        All or nothing; the same content ingested twice adds nothing. Returns the final
        report (rows, files_written, duplicates, warnings, ...)."""
        return json.loads(self._ingest(feature_set, os.fspath(path), project))

    def list(self, project=None):
        """What the project declares: a ``pyarrow.Table`` of kind (entity, feature_set,
        vector), name, version (a feature set's latest), owner and description."""
        p = json.loads(self._project(project))
        rows = [{"kind": "entity", "name": e["name"], "version": None, "owner": None, "description": e["description"]}
                for e in p["entities"].values()]
        rows += [{"kind": "feature_set", "name": name, "version": versions[-1]["version"],
                  "owner": versions[-1].get("owner"), "description": versions[-1]["description"]}
                 for name, versions in p["feature_sets"].items()]
        rows += [{"kind": "vector", "name": v["name"], "version": None, "owner": None, "description": v["description"]}
                 for v in p["vectors"].values()]
        return pyarrow.Table.from_pylist(rows, schema=_LIST_SCHEMA)

    def describe(self, kind, name, project=None):
        """One declaration as a dict: ``kind`` is entity, feature_set (``name`` or
        ``name@version``) or vector."""
        p = json.loads(self._project(project))
        found = None
        if kind == "entity":
            found = p["entities"].get(name)
        elif kind == "feature_set":
            base, _, version = name.partition("@")
            versions = p["feature_sets"].get(base, [])
            found = next((v for v in versions if str(v["version"]) == version), None) if version else (versions or [None])[-1]
        elif kind == "vector":
            found = p["vectors"].get(name)
        else:
            raise InvalidArgumentError(f"kind '{kind}': give entity, feature_set or vector")
        if found is None:
            raise NotFoundError(f"no {kind.replace('_', ' ')} '{name}' in project {p['name']}")
        return found

    def stats(self, feature_set, window="..", project=None):
        """Statistics of every feature of ``feature_set`` (``name`` or ``name@version``) over
        ``window``: ``FROM..TO`` (offline rows by event time; dates, RFC 3339 times or µs,
        either side open), ``dataset:NAME`` or ``serving[:FROM..TO]`` (values served online).
        A ``pyarrow.Table``, one row per feature; ``.schema.metadata`` holds the rows and days."""
        report = json.loads(self._stats(feature_set, window, project))
        table = pyarrow.Table.from_pylist(report["features"])
        meta = {k: str(report[k]) for k in ("feature_set", "version", "rows", "days")}
        return table.replace_schema_metadata(meta)

    def drift(self, reference, current, feature_set=None, vector=None, project=None):
        """How the features of ``feature_set`` or ``vector`` moved from ``reference`` to
        ``current`` (windows as ``stats`` takes them): a ``pyarrow.Table``, one row per
        feature, with its status (ok, warning, drift, unknown), PSI, KS, Jensen–Shannon,
        Hellinger and TVD; ``.schema.metadata`` holds the overall status."""
        report = json.loads(self._drift(reference, current, feature_set, vector, project))
        rows = []
        for f in report["features"]:
            metrics = f.get("metrics") or {}
            rows.append({"feature": f["feature"], "status": f["status"], "psi": metrics.get("psi"),
                         "ks": metrics.get("ks"), "js_distance": metrics.get("js_distance"),
                         "hellinger": metrics.get("hellinger"), "tvd": metrics.get("tvd"),
                         "reference_count": f["reference_count"], "current_count": f["current_count"],
                         "error": f.get("error")})
        table = pyarrow.Table.from_pylist(rows, schema=_DRIFT_SCHEMA)
        return table.replace_schema_metadata({"status": report["status"]})

    def datasets(self, project=None):
        """The training datasets saved in the project (``save_as``), with their lineage."""
        return json.loads(self._datasets(project))

    def iter_historical_features(self, spine, features=None, vector=None, timestamp_column="event_timestamp",
                                 save_as=None, project=None, full_feature_names=False):
        """A point-in-time training set, batch by batch as the node streams it: an iterator of
        ``pyarrow.RecordBatch`` with ``.schema`` and ``.rows``. Leaving it early (or Ctrl-C)
        cancels the training set on the node."""
        return super().iter_historical_features(_arrow(spine, "spine"), features, vector, timestamp_column,
                                                save_as, project, full_feature_names)

    def get_historical_features(self, spine, features=None, vector=None, timestamp_column="event_timestamp",
                                save_as=None, project=None, full_feature_names=False):
        """A point-in-time-correct training set as a ``pyarrow.Table``: each row of ``spine``
        (a pandas or pyarrow table of join keys, ``timestamp_column`` and any labels, times
        naive as UTC or in any zone) with the values ``features`` or ``vector`` had at its
        time. Columns are named by feature (``set__feature`` only where two sets share a name;
        ``full_feature_names=True`` always). ``save_as`` also stores it as a dataset."""
        batches = self.iter_historical_features(spine, features, vector, timestamp_column, save_as, project,
                                                full_feature_names)
        return pyarrow.Table.from_batches(list(batches), schema=batches.schema)

    def push(self, feature_set, data, project=None):
        """Writes the rows of ``data`` (pandas, pyarrow, polars or any Arrow data) to
        ``feature_set``: join keys, the event time and features by name. Every row is checked
        before any is written; returns the number of rows written."""
        return super().push(feature_set, _arrow(data, "data"), project)
