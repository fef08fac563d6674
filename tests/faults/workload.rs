//! Clients that write and read a few keys through whatever node they can reach, and note
//! what they saw. Writes use few distinct event times, so ties are common: the case the
//! tie rule must hold through splits and merges.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use quiver_client::{Client, Consistency, FeatureSelection, Freshness, OnlineRequest, Value};
use quiver_tests::{driver_key, driver_row};

use crate::checker::{Kind, Op, State};

/// How long a client waits for an answer; a write without one has an unknown outcome.
const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// Event times a write picks from: few, so equal ones meet often.
const EVENT_TIMES: i64 = 3;

#[derive(Clone)]
pub struct Workload {
    pub endpoints: Arc<Vec<String>>,
    pub keys: i64,
    /// The event times written: `base`, `base + 1`, … (µs).
    pub base_ts: i64,
    pub start: Instant,
}

impl Workload {
    fn micros(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Client `id` runs until `stop`, each operation a write or a read of a random key.
    pub async fn client(self, id: u32, stop: Arc<AtomicBool>) -> Vec<Op> {
        let mut history = Vec::new();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(id).wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut client: Option<Client> = None;
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let Some(connected) = client.clone() else {
                // Through another node each time: the one it had may be down.
                let endpoint = &self.endpoints[(id as usize + seq as usize) % self.endpoints.len()];
                seq += 1;
                match tokio::time::timeout(OP_TIMEOUT, Client::connect(endpoint.clone())).await {
                    Ok(Ok(c)) => client = Some(c),
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
                continue;
            };
            let key = rng.below(self.keys as u64) as i64;
            let op = if rng.below(10) < 6 {
                seq += 1;
                // Unique in the run, and exact as an f64.
                let value = u64::from(id) * 1_000_000_000 + seq;
                let ts = self.base_ts + rng.below(EVENT_TIMES as u64) as i64;
                self.write(&connected, id, key, ts, value).await
            } else {
                self.read(&connected, id, key).await
            };
            // A client that failed reconnects, perhaps through another node.
            if op.ret.is_none() {
                client = None;
            }
            history.push(op);
        }
        history
    }

    pub async fn write(&self, client: &Client, id: u32, key: i64, ts: i64, value: u64) -> Op {
        let call = self.micros();
        let row = driver_row(key, ts, value as f64, 0);
        let done = tokio::time::timeout(OP_TIMEOUT, client.write("rides", "driver_stats", vec![row])).await;
        let ret = matches!(done, Ok(Ok(_))).then(|| self.micros());
        Op { client: id, key, call, ret, kind: Kind::Write { ts, value } }
    }

    /// A linearizable read; one that fails has no outcome and the checker drops it.
    pub async fn read(&self, client: &Client, id: u32, key: i64) -> Op {
        let call = self.micros();
        let request = OnlineRequest {
            project: "rides".into(),
            features: FeatureSelection::Refs(vec!["driver_stats:conv_rate".into()]),
            entities: vec![driver_key(key)],
            consistency: Consistency::Linearizable,
        };
        let answer = tokio::time::timeout(OP_TIMEOUT, client.get_online(request)).await;
        let (ret, seen) = match answer {
            Ok(Ok(answer)) => (Some(self.micros()), seen(&answer.rows[0][0])),
            _ => (None, None),
        };
        Op { client: id, key, call, ret, kind: Kind::Read { seen } }
    }
}

/// The register's state as a read returned it. A value that is not one a client wrote
/// (expired, or not a whole number) stays as a value no write has, so the checker flags it.
fn seen(value: &quiver_client::FeatureValue) -> State {
    match (value.status, &value.value, value.event_ts) {
        (Freshness::NotFound, _, _) => None,
        (Freshness::Present, Value::Float64(v), Some(ts)) if v.fract() == 0.0 && *v >= 0.0 => Some((ts, *v as u64)),
        (_, _, ts) => Some((ts.unwrap_or(i64::MIN), u64::MAX)),
    }
}

/// xorshift64*: each client's own, so runs differ only by timing.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}
