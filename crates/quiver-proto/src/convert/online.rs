//! Online reads: feature selections, consistency, freshness and the values of an answer.

use quiver_core::online::{Consistency, FeatureSelection, FeatureValue, OnlineFeatures};
use quiver_core::row::Freshness;
use quiver_core::{Error, Result};

use crate::convert::values::{value_from_proto, value_to_proto};
use crate::v1;
use crate::v1::{get_online_features_request, historical_request};

/// The features of an online read.
pub fn online_selection_to_proto(selection: FeatureSelection) -> get_online_features_request::Features {
    match selection {
        FeatureSelection::Vector(v) => get_online_features_request::Features::Vector(v),
        FeatureSelection::Refs(refs) => get_online_features_request::Features::Refs(v1::FeatureRefs { refs }),
    }
}

/// The features of a point-in-time retrieval.
/// The features an online read names; a read naming none is refused.
pub fn online_selection_from_proto(
    features: Option<get_online_features_request::Features>,
) -> Result<FeatureSelection> {
    match features {
        Some(get_online_features_request::Features::Vector(v)) => Ok(FeatureSelection::Vector(v)),
        Some(get_online_features_request::Features::Refs(r)) => Ok(FeatureSelection::Refs(r.refs)),
        None => Err(no_selection()),
    }
}

/// The features a training set names; a request naming none is refused.
pub fn historical_selection_from_proto(features: Option<historical_request::Features>) -> Result<FeatureSelection> {
    match features {
        Some(historical_request::Features::Vector(v)) => Ok(FeatureSelection::Vector(v)),
        Some(historical_request::Features::Refs(r)) => Ok(FeatureSelection::Refs(r.refs)),
        None => Err(no_selection()),
    }
}

fn no_selection() -> Error {
    Error::InvalidArgument("name a feature vector or feature references".into())
}

pub fn historical_selection_to_proto(selection: FeatureSelection) -> historical_request::Features {
    match selection {
        FeatureSelection::Vector(v) => historical_request::Features::Vector(v),
        FeatureSelection::Refs(refs) => historical_request::Features::Refs(v1::FeatureRefs { refs }),
    }
}

pub fn consistency_to_proto(consistency: Consistency) -> v1::Consistency {
    match consistency {
        Consistency::Linearizable => v1::Consistency::Linearizable,
        Consistency::Stale => v1::Consistency::Stale,
    }
}

pub fn freshness_to_proto(freshness: Freshness) -> v1::Status {
    match freshness {
        Freshness::Present => v1::Status::Present,
        Freshness::NotFound => v1::Status::NotFound,
        Freshness::Expired => v1::Status::Expired,
    }
}

/// A consistency this version does not know reads as linearizable, the stricter one.
pub fn consistency_from_proto(consistency: i32) -> Consistency {
    match v1::Consistency::try_from(consistency) {
        Ok(v1::Consistency::Stale) => Consistency::Stale,
        Ok(v1::Consistency::Linearizable) | Err(_) => Consistency::Linearizable,
    }
}

/// A status this version does not know reads as not found.
pub fn freshness_from_proto(status: i32) -> Freshness {
    match v1::Status::try_from(status) {
        Ok(v1::Status::Present) => Freshness::Present,
        Ok(v1::Status::Expired) => Freshness::Expired,
        Ok(v1::Status::NotFound) | Err(_) => Freshness::NotFound,
    }
}

pub fn feature_value_from_proto(v: v1::FeatureValue) -> FeatureValue {
    let status = freshness_from_proto(v.status);
    FeatureValue {
        value: v.value.map(value_from_proto).unwrap_or_default(),
        event_ts: (status != Freshness::NotFound).then_some(v.event_timestamp_micros),
        status,
    }
}

/// A value of an answer; a value without a row has event time 0 on the wire.
pub fn feature_value_to_proto(v: FeatureValue) -> v1::FeatureValue {
    v1::FeatureValue {
        value: Some(value_to_proto(v.value)),
        event_timestamp_micros: v.event_ts.unwrap_or_default(),
        status: freshness_to_proto(v.status) as i32,
    }
}

/// The answer of node `served_by`.
pub fn online_features_to_proto(answer: OnlineFeatures, served_by: u64) -> v1::GetOnlineFeaturesResponse {
    v1::GetOnlineFeaturesResponse {
        features: answer.features,
        results: answer
            .rows
            .into_iter()
            .map(|row| v1::EntityResult { values: row.into_iter().map(feature_value_to_proto).collect() })
            .collect(),
        served_by,
        staleness_bound_ms: answer.staleness_bound_ms,
    }
}

/// One node's answer, its rows in the order of the entities it was sent.
pub fn online_features_from_proto(reply: v1::GetOnlineFeaturesResponse) -> OnlineFeatures {
    OnlineFeatures {
        features: reply.features,
        rows: reply.results.into_iter().map(|r| r.values.into_iter().map(feature_value_from_proto).collect()).collect(),
        staleness_bound_ms: reply.staleness_bound_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_core::Value;

    #[test]
    fn an_answer_round_trips_and_an_unknown_consistency_reads_as_linearizable() {
        let value = |value, event_ts, status| FeatureValue { value, event_ts, status };
        let answer = OnlineFeatures {
            features: vec!["s:a".into(), "s:b".into()],
            rows: vec![
                vec![
                    value(Value::Int64(7), Some(5), Freshness::Present),
                    value(Value::Null, Some(3), Freshness::Expired),
                ],
                vec![
                    value(Value::Null, None, Freshness::NotFound),
                    value(Value::Float64(0.5), Some(9), Freshness::Present),
                ],
            ],
            staleness_bound_ms: 12,
        };
        let wire = online_features_to_proto(answer.clone(), 3);
        assert_eq!(wire.served_by, 3);
        assert_eq!(online_features_from_proto(wire), answer);
        for c in [Consistency::Linearizable, Consistency::Stale] {
            assert_eq!(consistency_from_proto(consistency_to_proto(c) as i32), c);
        }
        assert_eq!(consistency_from_proto(7), Consistency::Linearizable);
    }

    #[test]
    fn freshness_round_trips_and_an_unknown_status_reads_as_not_found() {
        for f in [Freshness::Present, Freshness::NotFound, Freshness::Expired] {
            assert_eq!(freshness_from_proto(freshness_to_proto(f) as i32), f);
        }
        assert_eq!(freshness_from_proto(9), Freshness::NotFound);
    }

    #[test]
    fn answers_keep_values_in_order_and_drop_the_event_time_of_missing_rows() {
        let value = |v: Value, ts, status: Freshness| v1::FeatureValue {
            value: Some(value_to_proto(v)),
            event_timestamp_micros: ts,
            status: freshness_to_proto(status) as i32,
        };
        let reply = v1::GetOnlineFeaturesResponse {
            features: vec!["s:a".into(), "s:b".into()],
            results: vec![v1::EntityResult {
                values: vec![value(Value::Int64(3), 7, Freshness::Present), value(Value::Null, 0, Freshness::NotFound)],
            }],
            served_by: 1,
            staleness_bound_ms: 12,
        };
        let answer = online_features_from_proto(reply);
        assert_eq!(answer.features, ["s:a", "s:b"]);
        assert_eq!(answer.staleness_bound_ms, 12);
        assert_eq!(
            answer.rows,
            vec![vec![
                FeatureValue { value: Value::Int64(3), event_ts: Some(7), status: Freshness::Present },
                FeatureValue { value: Value::Null, event_ts: None, status: Freshness::NotFound },
            ]]
        );
    }

    #[test]
    fn selections_name_a_vector_or_references_in_both_requests() {
        let refs = FeatureSelection::Refs(vec!["s:*".into()]);
        assert_eq!(
            online_selection_to_proto(refs.clone()),
            get_online_features_request::Features::Refs(v1::FeatureRefs { refs: vec!["s:*".into()] })
        );
        assert_eq!(
            historical_selection_to_proto(FeatureSelection::Vector("v".into())),
            historical_request::Features::Vector("v".into())
        );
    }
}
