//! The online path: writes and reads split by shard, sent to the nodes that hold each part,
//! in parallel, and put back together.

use crate::conn::Conn;
use quiver_core::online::{Consistency, OnlineFeatures};
use quiver_core::row::InputRow;
use quiver_proto::v1;
use quiver_proto::v1::feature_service_client::FeatureServiceClient;

use crate::client::{Client, MAX_MESSAGE_BYTES};
use crate::error::{Error, Result};
use crate::keys;
use crate::reassemble::{PartAnswer, reassemble};
use crate::routing::{RESPLITS, range_changed};
use crate::table::Parts;
use crate::types::{OnlineRequest, WriteOutcome};

/// An entity of a read: (position in the request, its key).
type ReadItem = (usize, v1::EntityKey);

impl Client {
    /// Writes rows of one feature set (`name` or `name@version`). Each row holds the
    /// entity's join keys, the feature set's timestamp column and any of its features
    /// (missing ones are null).
    ///
    /// The whole batch is validated first: one bad row rejects the batch, naming the row
    /// (from 1) and field, and nothing is written. Rows are sent to their shards' leaders in
    /// parallel; each shard applies its part atomically, and a part retried after a timeout
    /// is applied once. An older row never replaces a newer one (last writer wins by event time).
    ///
    /// ```no_run
    /// use quiver_client::{Client, InputRow, Value};
    ///
    /// # async fn example(client: Client) -> quiver_client::Result<()> {
    /// let row = InputRow::from([
    ///     ("driver_id".to_string(), Value::Int64(1001)),
    ///     ("event_timestamp".to_string(), Value::Timestamp(1_764_000_000_000_000)),
    ///     ("conv_rate".to_string(), Value::Float64(0.87)),
    /// ]);
    /// let outcome = client.write("rides", "driver_stats", vec![row]).await?;
    /// assert_eq!(outcome.rows_written, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn write(&self, project: &str, feature_set: &str, rows: Vec<InputRow>) -> Result<WriteOutcome> {
        let request_id = self.router.request_id();
        // Every part carries the request's id and its rows' positions in the request, so a row
        // applies once whichever shard holds its key when a part is sent again.
        let make = |rows: Vec<(u32, InputRow)>| {
            let (row_positions, rows): (Vec<u32>, Vec<InputRow>) = rows.into_iter().unzip();
            v1::WriteFeaturesRequest {
                project: project.into(),
                feature_set: feature_set.into(),
                rows: rows.into_iter().map(quiver_proto::row_to_proto).collect(),
                route: None,
                request_id: request_id.clone(),
                row_positions,
            }
        };
        let rows: Vec<(u32, InputRow)> = rows.into_iter().enumerate().map(|(i, row)| (i as u32, row)).collect();
        let hashes = self
            .router
            .with_project(project, |p| keys::row_hashes(p, feature_set, rows.iter().map(|(_, row)| row)))
            .await;
        let Some(hashes) = hashes else {
            // Not routable here (unknown names, a bad row): the node validates and says why.
            let request = make(rows);
            let reply = self
                .redirected(|c| {
                    let request = request.clone();
                    async move { Ok(c.features.clone().write_features(request).await.map_err(Error::from)?.into_inner()) }
                })
                .await?;
            let mut outcome = WriteOutcome::default();
            outcome.add(reply);
            return Ok(outcome);
        };
        let hashed: Vec<(u64, (u32, InputRow))> = hashes.into_iter().zip(rows).collect();
        let mut splits = 0;
        loop {
            let parts = self.router.split(hashed.clone()).await?;
            let sends = parts.into_iter().map(|(shard, rows)| {
                let request = make(rows);
                self.router.send(shard, true, move |channel, route| {
                    let request = v1::WriteFeaturesRequest { route: Some(route), ..request.clone() };
                    async move {
                        let mut client =
                            FeatureServiceClient::new(channel).max_encoding_message_size(MAX_MESSAGE_BYTES);
                        Ok(client.write_features(request).await.map_err(Error::from)?.into_inner())
                    }
                })
            });
            // A part refused for a range that changed was not applied; the others, sent again
            // with the same ids, apply once.
            match futures::future::try_join_all(sends).await {
                Ok(replies) => {
                    let mut outcome = WriteOutcome::default();
                    replies.into_iter().for_each(|reply| outcome.add(reply));
                    return Ok(outcome);
                }
                Err(e) if range_changed(&e) && splits < RESPLITS => splits += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the latest values of features for entities: one row per entity, in request
    /// order, each value with its event time and status (`Present`, `NotFound`, or `Expired`
    /// when older than the feature set's TTL).
    ///
    /// Entities are grouped by shard, each group bound for its shard's leader
    /// (linearizable) or any replica (stale); the groups bound for one node go in one
    /// request, and the nodes are asked in parallel.
    ///
    /// ```no_run
    /// use std::collections::BTreeMap;
    /// use quiver_client::{Client, Consistency, FeatureSelection, Freshness, OnlineRequest, Value};
    ///
    /// # async fn example(client: Client) -> quiver_client::Result<()> {
    /// let answer = client
    ///     .get_online(OnlineRequest {
    ///         project: "rides".into(),
    ///         features: FeatureSelection::Refs(vec!["driver_stats:conv_rate".into()]),
    ///         entities: vec![BTreeMap::from([("driver_id".to_string(), Value::Int64(1001))])],
    ///         consistency: Consistency::Linearizable,
    ///     })
    ///     .await?;
    /// let conv_rate = &answer.rows[0][0];
    /// if conv_rate.status == Freshness::Present {
    ///     println!("{} = {}", answer.features[0], conv_rate.value);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_online(&self, request: OnlineRequest) -> Result<OnlineFeatures> {
        let OnlineRequest { project, features, entities, consistency } = request;
        let hashes = self.router.with_project(&project, |p| keys::entity_hashes(p, &features, &entities)).await;
        let features = Some(quiver_proto::online_selection_to_proto(features));
        let make = |entities: Vec<v1::EntityKey>| v1::GetOnlineFeaturesRequest {
            project: project.clone(),
            features: features.clone(),
            entities,
            consistency: quiver_proto::consistency_to_proto(consistency) as i32,
            routes: Vec::new(),
        };
        let entities: Vec<v1::EntityKey> = entities.into_iter().map(quiver_proto::entity_key_to_proto).collect();
        let Some(hashes) = hashes.filter(|h| !h.is_empty()) else {
            let proto = make(entities);
            let reply = self
                .redirected(|c| {
                    let proto = proto.clone();
                    async move { Ok(c.features.clone().get_online_features(proto).await.map_err(Error::from)?.into_inner()) }
                })
                .await?;
            return Ok(quiver_proto::online_features_from_proto(reply));
        };
        let count = entities.len();
        let indexed: Vec<(u64, ReadItem)> = hashes.into_iter().zip(entities.into_iter().enumerate()).collect();
        let leader_only = consistency == Consistency::Linearizable;
        let mut splits = 0;
        let answers = loop {
            let parts = self.router.split(indexed.clone()).await?;
            let nodes = self.router.by_node(parts, leader_only).await?;
            let reads = nodes.into_iter().map(|(addr, parts)| self.read_node(addr, parts, leader_only, &make));
            match futures::future::try_join_all(reads).await {
                Ok(answers) => break answers.into_iter().flatten().collect(),
                Err(e) if range_changed(&e) && splits < RESPLITS => splits += 1,
                Err(e) => return Err(e),
            }
        };
        let answer = reassemble(answers);
        debug_assert_eq!(answer.rows.len(), count);
        Ok(answer)
    }

    /// Reads the parts one node serves: in one request, or when that fails (a leader moved,
    /// the map changed), shard by shard with the router's retries. Returns each answer with
    /// the request positions of its entities.
    async fn read_node(
        &self,
        addr: String,
        parts: Parts<ReadItem>,
        leader_only: bool,
        make: &impl Fn(Vec<v1::EntityKey>) -> v1::GetOnlineFeaturesRequest,
    ) -> Result<Vec<PartAnswer>> {
        if parts.len() > 1 {
            let shards: Vec<u64> = parts.iter().map(|(shard, _)| *shard).collect();
            let items = parts.iter().flat_map(|(_, items)| items);
            let positions = items.clone().map(|(i, _)| *i).collect();
            let proto = make(items.map(|(_, key)| key.clone()).collect());
            let once = self.router.send_once(&addr, &shards, leader_only, |channel, routes| {
                get_online_features(channel, v1::GetOnlineFeaturesRequest { routes, ..proto })
            });
            if let Ok(answer) = once.await {
                return Ok(vec![(positions, answer)]);
            }
        }
        let reads = parts.into_iter().map(|(shard, items)| {
            let (positions, keys): (Vec<usize>, Vec<v1::EntityKey>) = items.into_iter().unzip();
            let proto = make(keys);
            let read = self.router.send(shard, leader_only, move |channel, route| {
                get_online_features(channel, v1::GetOnlineFeaturesRequest { routes: vec![route], ..proto.clone() })
            });
            async move { Ok((positions, read.await?)) }
        });
        futures::future::try_join_all(reads).await
    }
}

async fn get_online_features(channel: Conn, proto: v1::GetOnlineFeaturesRequest) -> Result<OnlineFeatures> {
    let mut client = FeatureServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let reply = client.get_online_features(proto).await.map_err(Error::from)?.into_inner();
    Ok(quiver_proto::online_features_from_proto(reply))
}
