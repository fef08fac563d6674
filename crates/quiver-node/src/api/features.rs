//! The online data path over gRPC: requests and answers translated to and from the domain
//! types of `crate::online`, which does the work.

use std::sync::Arc;

use quiver_core::epoch::Epoch;
use quiver_proto::v1::feature_service_server::FeatureService;
use quiver_proto::v1::{
    GetOnlineFeaturesRequest, GetOnlineFeaturesResponse, ShardRoute, WriteFeaturesRequest, WriteFeaturesResponse,
};
use quiver_proto::{consistency_from_proto, fields_from_proto, online_features_to_proto, online_selection_from_proto};
use tonic::{Request, Response, Status};

use super::observed::{admit, observed};
use crate::node::Node;
use crate::online::{self, Route};

pub struct FeatureApi {
    pub node: Arc<Node>,
}

fn route(r: ShardRoute) -> Route {
    Route { shard: r.shard_id, epoch: Epoch { version: r.version, conf_ver: r.conf_ver } }
}

#[tonic::async_trait]
impl FeatureService for FeatureApi {
    async fn write_features(
        &self,
        request: Request<WriteFeaturesRequest>,
    ) -> std::result::Result<Response<WriteFeaturesResponse>, Status> {
        let call = admit(&self.node, "WriteFeatures", &request)?;
        let req = request.into_inner();
        let write = online::Write {
            project: req.project,
            feature_set: req.feature_set,
            rows: req.rows.into_iter().map(|r| fields_from_proto(r.fields)).collect(),
            route: req.route.map(route),
            request_id: req.request_id,
            row_positions: req.row_positions,
        };
        observed(&self.node, &call, async {
            let written = online::write(&self.node, &call, write).await?;
            Ok(WriteFeaturesResponse { rows_written: written.rows, shard_log_index: written.shard_log_index })
        })
        .await
    }

    async fn get_online_features(
        &self,
        request: Request<GetOnlineFeaturesRequest>,
    ) -> std::result::Result<Response<GetOnlineFeaturesResponse>, Status> {
        let call = admit(&self.node, "GetOnlineFeatures", &request)?;
        let mut req = request.into_inner();
        observed(&self.node, &call, async {
            let read = online::Read {
                features: online_selection_from_proto(req.features.take())?,
                consistency: consistency_from_proto(req.consistency),
                project: req.project,
                entities: req.entities.into_iter().map(|e| fields_from_proto(e.keys)).collect(),
                routes: req.routes.into_iter().map(route).collect(),
            };
            let answer = online::read(&self.node, &call, read).await?;
            Ok(online_features_to_proto(answer, self.node.id))
        })
        .await
    }
}
