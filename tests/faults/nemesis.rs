//! The faults of a run: one host fault at a time (kill -9, SIGSTOP, a partition, a clock
//! jump, a full or a slow disk), each held a few seconds and then healed, while shard
//! splits, merges, replica moves and leader transfers go on beside them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use quiver_admin::local_node::LocalNode;
use quiver_client::{Client, OpKind};
use tokio::sync::Mutex;

use crate::lab::Lab;
use crate::workload::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultKind {
    Kill,
    Pause,
    Partition,
    Clock,
    Disk,
    ShardOps,
}

/// What happened when, for the history (µs since the run began).
#[derive(Debug, Clone)]
pub struct Event {
    pub at: u64,
    /// What kind of event, for the run's summary: `kill`, `partition`, `shard op`…
    pub kind: &'static str,
    pub what: String,
}

/// The nodes and their hosts; the nodes go first when it is dropped, so their file
/// systems and namespaces can be removed.
pub struct Cluster {
    pub nodes: Vec<LocalNode>,
    pub endpoints: Vec<String>,
    pub lab: Lab,
}

impl Cluster {
    /// Starts the node on host `i` again after a kill or a crash (a full disk may stop one).
    fn revive(&mut self, i: usize) -> Result<()> {
        self.nodes[i].respawn()?;
        self.lab.hosts[i].adopt(self.nodes[i].pid().unwrap_or(0))
    }

    /// Undoes every fault: heals the network, frees and unthrottles disks, sets clocks back,
    /// resumes paused nodes and starts those that are down.
    pub fn heal_all(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            let host = &self.lab.hosts[i];
            host.heal()?;
            host.fill(false)?;
            host.throttle(None)?;
            host.set_clock(0)?;
            if self.nodes[i].pid().is_some() {
                let _ = self.nodes[i].signal("CONT");
            }
            if self.nodes[i].has_exited() {
                self.revive(i)?;
            }
        }
        Ok(())
    }
}

pub struct Nemesis {
    pub cluster: Arc<Mutex<Cluster>>,
    pub kinds: Vec<FaultKind>,
    pub start: Instant,
    pub events: Arc<std::sync::Mutex<Vec<Event>>>,
}

impl Nemesis {
    fn note(&self, kind: &'static str, what: String) {
        let at = self.start.elapsed().as_micros() as u64;
        eprintln!("[{:>7.1}s] {what}", at as f64 / 1e6);
        self.events.lock().unwrap().push(Event { at, kind, what });
    }

    /// Host faults one after another until `stop`; everything healed when it returns.
    pub async fn host_faults(self: Arc<Self>, stop: Arc<AtomicBool>) -> Result<()> {
        let kinds: Vec<FaultKind> = self.kinds.iter().copied().filter(|k| *k != FaultKind::ShardOps).collect();
        let mut rng = Rng(0x51_7cc1_b727_220a ^ self.start.elapsed().as_nanos() as u64);
        while !stop.load(Ordering::Relaxed) && !kinds.is_empty() {
            pause_for(&stop, Duration::from_millis(1000 + rng.below(3000))).await;
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let kind = kinds[rng.below(kinds.len() as u64) as usize];
            let (kind, what) = self.inject(kind, &mut rng).await?;
            self.note(kind, what);
            pause_for(&stop, Duration::from_millis(2000 + rng.below(6000))).await;
            self.cluster.lock().await.heal_all()?;
            self.note("healed", "healed".into());
        }
        Ok(())
    }

    /// Injects a fault of `kind`; says which, as (kind, what).
    async fn inject(&self, kind: FaultKind, rng: &mut Rng) -> Result<(&'static str, String)> {
        let mut cluster = self.cluster.lock().await;
        let n = cluster.nodes.len();
        let i = rng.below(n as u64) as usize;
        let name = format!("node {}", i + 1);
        Ok(match kind {
            FaultKind::Kill => {
                cluster.nodes[i].kill_9()?;
                ("kill", format!("kill -9 {name}"))
            }
            FaultKind::Pause => {
                cluster.nodes[i].signal("STOP")?;
                ("pause", format!("SIGSTOP {name}"))
            }
            FaultKind::Partition => {
                // A minority cut off from the rest, both ways; clients still reach everyone.
                let size = 1 + rng.below(((n - 1) / 2) as u64) as usize;
                let mut order: Vec<usize> = (0..n).collect();
                for k in (1..n).rev() {
                    order.swap(k, rng.below(k as u64 + 1) as usize);
                }
                let (minority, majority) = order.split_at(size);
                let rest: Vec<_> = majority.iter().map(|&m| &cluster.lab.hosts[m]).collect();
                for &m in minority {
                    cluster.lab.hosts[m].cut_from(&rest)?;
                }
                let names = |s: &[usize]| s.iter().map(|m| (m + 1).to_string()).collect::<Vec<_>>().join(",");
                ("partition", format!("partition {{{}}} | {{{}}}", names(minority), names(majority)))
            }
            FaultKind::Clock => {
                let seconds = (30 + rng.below(570)) as i64 * if rng.below(2) == 0 { 1 } else { -1 };
                cluster.lab.hosts[i].set_clock(seconds)?;
                ("clock", format!("clock of {name} {seconds:+} s"))
            }
            FaultKind::Disk if rng.below(2) == 0 => {
                cluster.lab.hosts[i].fill(true)?;
                ("disk full", format!("disk of {name} full"))
            }
            FaultKind::Disk => {
                cluster.lab.hosts[i].throttle(Some(20))?;
                ("disk slow", format!("disk of {name} slow (20 writes/s)"))
            }
            FaultKind::ShardOps => bail!("shard operations run beside host faults"),
        })
    }

    /// Splits, merges, moves and transfers, one every few seconds, through any node that
    /// answers; refusals (an operation already under way, a node down) are normal here.
    pub async fn shard_ops(self: Arc<Self>, stop: Arc<AtomicBool>) {
        let mut rng = Rng(0x2f_86b1_e5d4_4c1b ^ self.start.elapsed().as_nanos() as u64);
        let endpoints = self.cluster.lock().await.endpoints.clone();
        while !stop.load(Ordering::Relaxed) {
            pause_for(&stop, Duration::from_millis(2000 + rng.below(3000))).await;
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let endpoint = &endpoints[rng.below(endpoints.len() as u64) as usize];
            let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(3), Client::connect(endpoint.clone())).await
            else {
                continue;
            };
            let Ok(Ok(map)) = tokio::time::timeout(Duration::from_secs(3), client.shard_map()).await else { continue };
            let Some(kind) = pick_op(&map, endpoints.len() as u64, &mut rng) else { continue };
            let started =
                tokio::time::timeout(Duration::from_secs(10), client.start_shard_operation(kind.clone())).await;
            match started {
                Ok(Ok(op)) => self.note("shard op", format!("shard op {}: {kind:?}", op.id)),
                Ok(Err(e)) => self.note("shard op refused", format!("shard op refused: {kind:?}: {e}")),
                Err(_) => self.note("shard op unanswered", format!("shard op unanswered: {kind:?}")),
            }
        }
    }
}

/// One operation that the map makes possible, chosen at random.
fn pick_op(map: &quiver_client::ClusterMap, nodes: u64, rng: &mut Rng) -> Option<OpKind> {
    let shards = &map.shard_map.shards;
    let shard = &shards[rng.below(shards.len() as u64) as usize];
    Some(match rng.below(4) {
        // Keep the shard count within reach of both: splits would otherwise win.
        0 if shards.len() < 8 => OpKind::Split { shard: shard.id, at: 0, child: 0 },
        0 | 1 if shards.len() > 1 => {
            let at = shards.iter().position(|s| s.id == shard.id)?;
            let (left, right) = if at + 1 < shards.len() { (shard, &shards[at + 1]) } else { (&shards[at - 1], shard) };
            OpKind::Merge { left: left.id, right: right.id }
        }
        2 => {
            let from = *shard.voters.get(rng.below(shard.voters.len() as u64) as usize)?;
            let to = (1..=nodes).find(|n| !shard.voters.contains(n))?;
            OpKind::MoveReplica { shard: shard.id, from, to }
        }
        _ => {
            let to = *shard.voters.iter().find(|v| Some(**v) != shard.leader)?;
            OpKind::TransferLeader { shard: shard.id, to }
        }
    })
}

async fn pause_for(stop: &AtomicBool, total: Duration) {
    let until = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
