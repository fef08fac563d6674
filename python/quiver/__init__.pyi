from os import PathLike
from typing import Any, Literal, Optional, Sequence, Union

import pyarrow

class QuiverError(Exception):
    code: str

class NotFoundError(QuiverError): ...
class InvalidArgumentError(QuiverError): ...
class PermissionDeniedError(QuiverError): ...
class UnauthenticatedError(QuiverError): ...
class UnavailableError(QuiverError): ...

class TrainingSetBatches:
    @property
    def schema(self) -> pyarrow.Schema: ...
    @property
    def rows(self) -> int: ...
    def __iter__(self) -> "TrainingSetBatches": ...
    def __next__(self) -> pyarrow.RecordBatch: ...

class Client:
    def __init__(
        self,
        endpoint: Optional[str] = None,
        project: Optional[str] = None,
        token: Optional[str] = None,
        ca: Optional[Union[str, PathLike[str]]] = None,
        timeout: Optional[float] = None,
    ) -> None: ...
    @property
    def endpoint(self) -> str: ...
    def apply(self, definitions: Union[str, PathLike[str], dict[str, Any]]) -> list[dict[str, str]]: ...
    def projects(self) -> list[str]: ...
    def get_online_features(
        self,
        entities: Any,
        features: Optional[Sequence[str]] = None,
        vector: Optional[str] = None,
        consistency: Literal["linearizable", "stale"] = "linearizable",
        project: Optional[str] = None,
        metadata: bool = False,
    ) -> pyarrow.Table: ...
    def push(self, feature_set: str, data: Any, project: Optional[str] = None) -> int: ...
    def ingest(self, feature_set: str, path: Union[str, PathLike[str]], project: Optional[str] = None) -> dict[str, Any]: ...
    def datasets(self, project: Optional[str] = None) -> list[dict[str, Any]]: ...
    def iter_historical_features(
        self,
        spine: Any,
        features: Optional[Sequence[str]] = None,
        vector: Optional[str] = None,
        timestamp_column: str = "event_timestamp",
        save_as: Optional[str] = None,
        project: Optional[str] = None,
        full_feature_names: bool = False,
    ) -> TrainingSetBatches: ...
    def get_historical_features(
        self,
        spine: Any,
        features: Optional[Sequence[str]] = None,
        vector: Optional[str] = None,
        timestamp_column: str = "event_timestamp",
        save_as: Optional[str] = None,
        project: Optional[str] = None,
        full_feature_names: bool = False,
    ) -> pyarrow.Table: ...
    def list(self, project: Optional[str] = None) -> pyarrow.Table: ...
    def describe(self, kind: Literal["entity", "feature_set", "vector"], name: str, project: Optional[str] = None) -> dict[str, Any]: ...
    def stats(self, feature_set: str, window: str = "..", project: Optional[str] = None) -> pyarrow.Table: ...
    def drift(
        self,
        reference: str,
        current: str,
        feature_set: Optional[str] = None,
        vector: Optional[str] = None,
        project: Optional[str] = None,
    ) -> pyarrow.Table: ...
