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

    def push(self, feature_set, data, project=None):
        """Writes the rows of ``data`` (pandas, pyarrow, polars or any Arrow data) to
        ``feature_set``: join keys, the event time and features by name. Every row is checked
        before any is written; returns the number of rows written."""
        return super().push(feature_set, _arrow(data, "data"), project)
