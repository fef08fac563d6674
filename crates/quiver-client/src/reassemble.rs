//! Putting a split read back together: each part's answer holds the rows of the entities it
//! was sent, and the request positions of those entities say where each row goes.

use quiver_core::online::OnlineFeatures;

/// One part's answer with the request positions of its entities, in the order sent.
pub(crate) type PartAnswer = (Vec<usize>, OnlineFeatures);

/// The whole answer, one row per requested entity in request order. Every part names the
/// same columns (one read, one feature list); the staleness bound is the largest of the parts'.
pub(crate) fn reassemble(parts: Vec<PartAnswer>) -> OnlineFeatures {
    let count = parts.iter().map(|(positions, _)| positions.len()).sum();
    let mut answer = OnlineFeatures { rows: vec![Vec::new(); count], ..OnlineFeatures::default() };
    for (positions, part) in parts {
        answer.staleness_bound_ms = answer.staleness_bound_ms.max(part.staleness_bound_ms);
        answer.features = part.features;
        for (i, row) in positions.into_iter().zip(part.rows) {
            answer.rows[i] = row;
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use quiver_core::Value;
    use quiver_core::online::FeatureValue;
    use quiver_core::row::Freshness;

    use super::*;

    fn part(ids: &[i64], staleness_bound_ms: u64) -> OnlineFeatures {
        let value = |id: i64| FeatureValue { value: Value::Int64(id), event_ts: Some(id), status: Freshness::Present };
        OnlineFeatures {
            features: vec!["s:id".into()],
            rows: ids.iter().map(|id| vec![value(*id)]).collect(),
            staleness_bound_ms,
        }
    }

    fn ids(answer: &OnlineFeatures) -> Vec<Value> {
        answer.rows.iter().map(|row| row[0].value.clone()).collect()
    }

    #[test]
    fn rows_return_to_the_request_order_whatever_order_the_parts_answer_in() {
        // Entities 0..5 of a request, id = position * 10, split over three parts.
        let parts = vec![(vec![3, 0], part(&[30, 0], 0)), (vec![4], part(&[40], 0)), (vec![1, 2], part(&[10, 20], 0))];
        let answer = reassemble(parts);
        assert_eq!(ids(&answer), [0, 10, 20, 30, 40].map(Value::Int64));
        assert_eq!(answer.features, ["s:id"]);
    }

    #[test]
    fn the_staleness_bound_is_the_largest_of_the_parts() {
        let answer = reassemble(vec![(vec![1], part(&[1], 40)), (vec![0], part(&[0], 250)), (vec![2], part(&[2], 7))]);
        assert_eq!(answer.staleness_bound_ms, 250);
    }

    #[test]
    fn a_read_of_no_entities_is_an_empty_answer() {
        assert_eq!(reassemble(vec![]).rows, Vec::<Vec<FeatureValue>>::new());
    }
}
