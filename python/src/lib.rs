//! Quiver's Python client, `quiver._quiver` under the `quiver` package: the Rust client
//! (`quiver-client`: routing, retries, TLS, tokens, errors) behind a Python class. Arrow data
//! crosses through the Arrow C data interface (`arrow-pyarrow`), never value by value.
//!
//! Every call runs on one Tokio runtime with the GIL released, and checks for Python's
//! signals every 100 ms: Ctrl-C drops the call's future, which cancels its requests.

mod convert;
mod errors;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use arrow_pyarrow::{FromPyArrow, IntoPyArrow, Table};
use pyo3::prelude::*;
use pyo3::types::PyList;
use quiver_client::arrow_array::RecordBatch;
use quiver_client::{
    Action, Change, Consistency, Definitions, DriftTarget, FeatureSelection, HistoricalRequest, ObjectKind,
    OnlineRequest, Project, Spine, StatsWindow, TrainingSetStream,
};

use quiver_core::row::MAX_ROWS_PER_WRITE;

use crate::errors::{invalid, to_py};

/// The runtime every client's calls run on: two workers, as the client needs no more.
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("quiver-client")
        .enable_all()
        .build()
        .map_err(|e| errors::QuiverError::new_err(format!("starting the client's runtime: {e}")))?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Runs `work` with the GIL released until it ends or Python has a signal to raise
/// (KeyboardInterrupt): then the future is dropped, cancelling what it asked of the node.
fn wait<T: Send>(py: Python<'_>, work: impl Future<Output = PyResult<T>> + Send) -> PyResult<T> {
    let rt = runtime()?;
    py.detach(|| {
        rt.block_on(async {
            let mut work = std::pin::pin!(work);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    done = &mut work => return done,
                    _ = tick.tick() => Python::attach(|py| py.check_signals())?,
                }
            }
        })
    })
}

/// The features a call names: a list of references or a vector, one of the two.
fn selection(features: Option<Vec<String>>, vector: Option<String>) -> PyResult<FeatureSelection> {
    match (features, vector) {
        (Some(features), None) => Ok(FeatureSelection::Refs(features)),
        (None, Some(vector)) => Ok(FeatureSelection::Vector(vector)),
        _ => Err(invalid("give either features=[...] or vector=..., not both")),
    }
}

/// An answer as JSON, which the Python side turns into dicts and tables.
fn json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| invalid(format!("encoding the answer: {e}")))
}

/// The setting given, else the environment variable's value.
fn or_env(given: Option<String>, var: &str) -> Option<String> {
    given.or_else(|| std::env::var(var).ok().filter(|v| !v.is_empty()))
}

/// A change `apply` made, for Python: kind (project, entity, feature_set, vector), name,
/// action (created, updated, new_version with its version, unchanged).
fn change(c: Change) -> HashMap<&'static str, String> {
    let kind = match c.kind {
        ObjectKind::Project => "project",
        ObjectKind::Entity => "entity",
        ObjectKind::FeatureSet => "feature_set",
        ObjectKind::Vector => "vector",
    };
    let mut out = HashMap::from([("kind", kind.to_string()), ("name", c.name)]);
    let action = match c.action {
        Action::Created => "created",
        Action::Updated => "updated",
        Action::NewVersion(v) => {
            out.insert("version", v.to_string());
            "new_version"
        }
        Action::Unchanged => "unchanged",
    };
    out.insert("action", action.to_string());
    out
}

/// A connection to a Quiver cluster through any of its nodes.
#[pyclass(module = "quiver._quiver", subclass, frozen)]
struct Client {
    inner: quiver_client::Client,
    project: Option<String>,
    /// Projects' definitions as last fetched: the types of answers' columns and of pushed rows.
    projects: Mutex<HashMap<String, Project>>,
}

impl Client {
    /// The project a call works in: given, else the client's, else the only one there is.
    async fn project_name(&self, given: Option<String>) -> PyResult<String> {
        if let Some(name) = given.or_else(|| self.project.clone()) {
            return Ok(name);
        }
        let projects = self.inner.projects().await.map_err(to_py)?;
        match projects.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(invalid("no project exists yet: apply definitions first")),
            _ => Err(invalid(format!("name a project (project=...): there are {}", projects.join(", ")))),
        }
    }

    /// `call` in the project a call works in (see `project_name`), its error as Python's.
    async fn in_project<T, F>(&self, project: Option<String>, call: impl FnOnce(String) -> F) -> PyResult<T>
    where
        F: Future<Output = quiver_client::Result<T>>,
    {
        let project = self.project_name(project).await?;
        call(project).await.map_err(to_py)
    }

    /// Project `name`'s definitions: as fetched before unless `fresh`.
    async fn definitions(&self, name: &str, fresh: bool) -> PyResult<Project> {
        let known = self.projects.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned();
        if let Some(project) = known.filter(|_| !fresh) {
            return Ok(project);
        }
        let project = self.inner.project(name).await.map_err(to_py)?;
        self.projects.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), project.clone());
        Ok(project)
    }

    /// The features `selection` names in `project`, refetching its definitions once when
    /// they do not resolve (applied since they were fetched).
    async fn resolve(
        &self,
        project: &str,
        selection: &FeatureSelection,
    ) -> PyResult<(Project, Vec<quiver_core::registry::ResolvedFeature>)> {
        let known = self.definitions(project, false).await?;
        if let Ok(features) = known.select(selection) {
            return Ok((known, features));
        }
        let fresh = self.definitions(project, true).await?;
        let features = fresh.select(selection).map_err(|e| to_py(quiver_client::Error::Server(e)))?;
        Ok((fresh, features))
    }
}

#[pymethods]
impl Client {
    /// Connects to a node: `endpoint` (else `QUIVER_ENDPOINT`, else http://127.0.0.1:7070),
    /// `token` (else `QUIVER_TOKEN`), `ca` the cluster CA's PEM file for https:// (else
    /// `QUIVER_CA`), `project` (else `QUIVER_PROJECT`, else the only project), `timeout` in
    /// seconds per request.
    #[new]
    #[pyo3(signature = (endpoint=None, project=None, token=None, ca=None, timeout=None))]
    fn new(
        py: Python<'_>,
        endpoint: Option<String>,
        project: Option<String>,
        token: Option<String>,
        ca: Option<PathBuf>,
        timeout: Option<f64>,
    ) -> PyResult<Client> {
        let endpoint = or_env(endpoint, "QUIVER_ENDPOINT").unwrap_or_else(|| "http://127.0.0.1:7070".into());
        let mut builder = quiver_client::Client::builder(endpoint);
        if let Some(token) = or_env(token, "QUIVER_TOKEN") {
            builder = builder.token(token.trim());
        }
        if let Some(ca) = ca.or_else(|| or_env(None, "QUIVER_CA").map(PathBuf::from)) {
            let pem = std::fs::read(&ca).map_err(|e| invalid(format!("reading the CA {}: {e}", ca.display())))?;
            builder = builder.ca(pem);
        }
        if let Some(secs) = timeout {
            let timeout =
                Duration::try_from_secs_f64(secs).map_err(|_| invalid(format!("timeout {secs}: not seconds")))?;
            builder = builder.timeout(timeout);
        }
        let inner = wait(py, async { builder.connect().await.map_err(to_py) })?;
        let project = or_env(project, "QUIVER_PROJECT");
        Ok(Client { inner, project, projects: Mutex::new(HashMap::new()) })
    }

    /// The node this client was given.
    #[getter]
    fn endpoint(&self) -> String {
        self.inner.endpoint().to_string()
    }

    /// Applies definitions given as YAML text (what `quiverctl apply` reads; JSON is YAML
    /// too): all or nothing, idempotent. Returns the changes, as dicts of kind, name, action.
    fn _apply_text(&self, py: Python<'_>, text: &str) -> PyResult<Vec<HashMap<&'static str, String>>> {
        let defs = Definitions::from_yaml(text).map_err(|e| to_py(quiver_client::Error::Server(e)))?;
        let changes = wait(py, async { self.inner.apply(&defs).await.map_err(to_py) })?;
        self.projects.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(changes.into_iter().map(change).collect())
    }

    /// The projects' names.
    fn projects(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        wait(py, async { self.inner.projects().await.map_err(to_py) })
    }

    /// Online values of `features` (`set:feature` references) or of `vector`, for
    /// `entities` (a list of dicts of join keys, or Arrow data such as a pyarrow.Table),
    /// as a pyarrow.Table: the join keys, then a column per feature; with `metadata`, each
    /// feature's status and event time beside it.
    #[pyo3(signature = (entities, features=None, vector=None, consistency="linearizable", project=None, metadata=false))]
    #[allow(clippy::too_many_arguments, reason = "Python keyword arguments, each optional")]
    fn get_online_features(
        &self,
        py: Python<'_>,
        entities: &Bound<'_, PyAny>,
        features: Option<Vec<String>>,
        vector: Option<String>,
        consistency: &str,
        project: Option<String>,
        metadata: bool,
    ) -> PyResult<Py<PyAny>> {
        let selection = selection(features, vector)?;
        let consistency = match consistency {
            "linearizable" => Consistency::Linearizable,
            "stale" => Consistency::Stale,
            other => return Err(invalid(format!("consistency '{other}': give 'linearizable' or 'stale'"))),
        };
        let as_dicts = entities.is_instance_of::<PyList>();
        let batches = match as_dicts {
            true => None,
            false => Some(Table::from_pyarrow_bound(entities)?.into_inner().0),
        };
        let listed = match as_dicts {
            true => Some(convert::entities_from_dicts(entities)?),
            false => None,
        };
        let batch = wait(py, async {
            let project = self.project_name(project).await?;
            let (definitions, resolved) = self.resolve(&project, &selection).await?;
            let keys = convert::join_keys(&definitions, &resolved)?;
            let entities = match (listed, batches) {
                (Some(listed), _) => listed,
                (None, batches) => convert::entities_from_batches(&batches.unwrap_or_default(), &keys)?,
            };
            let request = OnlineRequest { project, features: selection, entities: entities.clone(), consistency };
            let answer = self.inner.get_online(request).await.map_err(to_py)?;
            convert::answer_batch(&answer, &resolved, &entities, &keys, metadata)
        })?;
        let table = Table::try_new(vec![batch.clone()], batch.schema()).map_err(|e| invalid(e.to_string()))?;
        Ok(table.into_pyarrow(py)?.unbind())
    }

    /// Ingests a Parquet or CSV file, a directory of them or an `s3://` URL, which the node
    /// reads, into feature set `feature_set`: all or nothing. The final report as JSON.
    #[pyo3(signature = (feature_set, path, project=None))]
    fn _ingest(&self, py: Python<'_>, feature_set: &str, path: &str, project: Option<String>) -> PyResult<String> {
        let done = self.in_project(project, |p| async move { self.inner.ingest(&p, feature_set, path, |_| {}).await });
        json(&wait(py, done)?)
    }

    /// Everything the project declares, every feature-set version included, as JSON.
    #[pyo3(signature = (project=None))]
    fn _project(&self, py: Python<'_>, project: Option<String>) -> PyResult<String> {
        let project = wait(py, async {
            let name = self.project_name(project).await?;
            self.definitions(&name, true).await
        })?;
        json(&project)
    }

    /// Statistics of every feature of `feature_set` over `window` (`FROM..TO`,
    /// `dataset:NAME`, `serving[:FROM..TO]`), as JSON.
    #[pyo3(signature = (feature_set, window="..", project=None))]
    fn _stats(&self, py: Python<'_>, feature_set: &str, window: &str, project: Option<String>) -> PyResult<String> {
        let window = StatsWindow::parse(window).map_err(|e| invalid(format!("window {e}")))?;
        let stats = self.in_project(project, |p| async move { self.inner.statistics(&p, feature_set, &window).await });
        json(&wait(py, stats)?)
    }

    /// Drift of `feature_set`'s or `vector`'s features from `reference` to `current`
    /// (windows as `_stats` takes them), as JSON.
    #[pyo3(signature = (reference, current, feature_set=None, vector=None, project=None))]
    fn _drift(
        &self,
        py: Python<'_>,
        reference: &str,
        current: &str,
        feature_set: Option<String>,
        vector: Option<String>,
        project: Option<String>,
    ) -> PyResult<String> {
        let target = match (feature_set, vector) {
            (Some(set), None) => DriftTarget::FeatureSet(set),
            (None, Some(vector)) => DriftTarget::Vector(vector),
            _ => return Err(invalid("give either feature_set=... or vector=..., not both")),
        };
        let reference = StatsWindow::parse(reference).map_err(|e| invalid(format!("reference window {e}")))?;
        let current = StatsWindow::parse(current).map_err(|e| invalid(format!("current window {e}")))?;
        let report =
            self.in_project(project, |p| async move { self.inner.drift(&p, &target, &reference, &current).await });
        json(&wait(py, report)?)
    }

    /// The training datasets saved in the project, as JSON.
    #[pyo3(signature = (project=None))]
    fn _datasets(&self, py: Python<'_>, project: Option<String>) -> PyResult<String> {
        let datasets = self.in_project(project, |p| async move { self.inner.datasets(&p).await });
        json(&wait(py, datasets)?)
    }

    /// A point-in-time training set for `spine` (Arrow data: its join keys, its time column
    /// and any labels) as a stream of batches in spine order.
    #[pyo3(signature = (spine, features=None, vector=None, timestamp_column="event_timestamp".to_string(), save_as=None, project=None, full_feature_names=false))]
    #[allow(clippy::too_many_arguments, reason = "Python keyword arguments, each optional")]
    fn iter_historical_features(
        &self,
        py: Python<'_>,
        spine: &Bound<'_, PyAny>,
        features: Option<Vec<String>>,
        vector: Option<String>,
        timestamp_column: String,
        save_as: Option<String>,
        project: Option<String>,
        full_feature_names: bool,
    ) -> PyResult<TrainingSetBatches> {
        let selection = selection(features, vector)?;
        let (batches, _) = Table::from_pyarrow_bound(spine)?.into_inner();
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Err(invalid("the spine has no rows"));
        }
        let stream = wait(py, async {
            let project = self.project_name(project).await?;
            let request =
                historical_request(project, selection, batches, timestamp_column, full_feature_names, save_as);
            self.inner.historical_stream(request, |_| {}).await.map_err(to_py)
        })?;
        let (schema, rows) = (stream.schema(), stream.rows());
        Ok(TrainingSetBatches { stream: tokio::sync::Mutex::new(stream), schema, rows })
    }

    /// Writes the rows of `data` (Arrow data: a pyarrow.Table, a polars DataFrame, anything
    /// with `__arrow_c_stream__`) to feature set `feature_set`: its join keys, event time and
    /// features by name, of their types or ones that cast to them. Checked whole before any
    /// row is written. Returns the number of rows written.
    #[pyo3(signature = (feature_set, data, project=None))]
    fn push(
        &self,
        py: Python<'_>,
        feature_set: &str,
        data: &Bound<'_, PyAny>,
        project: Option<String>,
    ) -> PyResult<u64> {
        let (batches, _) = Table::from_pyarrow_bound(data)?.into_inner();
        wait(py, async {
            let project = self.project_name(project).await?;
            let definitions = self.definitions(&project, true).await?;
            let fs = definitions.feature_set(feature_set, None).map_err(|e| to_py(quiver_client::Error::Server(e)))?;
            let entity = definitions.entity(&fs.entity).map_err(|e| to_py(quiver_client::Error::Server(e)))?;
            let mut rows = Vec::new();
            for batch in &batches {
                rows.extend(convert::rows_from_batch(batch, entity, fs, rows.len())?);
            }
            let mut written = 0;
            for chunk in rows.chunks(MAX_ROWS_PER_WRITE) {
                written += self.inner.write(&project, feature_set, chunk.to_vec()).await.map_err(to_py)?.rows_written;
            }
            Ok(written)
        })
    }
}

/// What `selection` and the spine's settings make a training-set request of.
fn historical_request(
    project: String,
    selection: FeatureSelection,
    spine: Vec<RecordBatch>,
    timestamp_column: String,
    full_feature_names: bool,
    save_as: Option<String>,
) -> HistoricalRequest {
    let mut request = HistoricalRequest::new(&project, selection, Spine::Batches(spine));
    request.timestamp_column = Some(timestamp_column);
    request.short_names = !full_feature_names;
    request.save_as = save_as;
    request.spine_name = "python".into();
    request
}

/// A training set's batches as they arrive (`Client.iter_historical_features`); dropping it
/// cancels the training set on the node.
#[pyclass(module = "quiver._quiver", frozen)]
struct TrainingSetBatches {
    stream: tokio::sync::Mutex<TrainingSetStream>,
    schema: arrow_schema::SchemaRef,
    rows: u64,
}

#[pymethods]
impl TrainingSetBatches {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let next = wait(py, async {
            use futures::StreamExt;
            self.stream.lock().await.next().await.transpose().map_err(to_py)
        })?;
        next.map(|batch| Ok(batch.into_pyarrow(py)?.unbind())).transpose()
    }

    /// The training set's columns, as a pyarrow.Schema.
    #[getter]
    fn schema(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.schema.as_ref().clone().into_pyarrow(py)?.unbind())
    }

    /// Rows in the whole training set.
    #[getter]
    fn rows(&self) -> u64 {
        self.rows
    }
}

#[pymodule]
fn _quiver(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Client>()?;
    m.add_class::<TrainingSetBatches>()?;
    errors::register(m)?;
    Ok(())
}
