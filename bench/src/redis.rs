//! The online yardstick: a Redis server (started by `bench/run.sh`, on loopback, persistence
//! off) loaded with the same drivers as `online`, one hash per driver with the same 10 fields,
//! then read by `redis-benchmark` with `HMGET` at the same concurrency. A request for 100
//! entities is a pipeline of 100 `HMGET`s (`-P 100`), Redis' nearest to a multi-key read.
//!
//! `redis-benchmark -r N` replaces `__rand_int__` with a uniform random number below N written
//! as 12 zero-padded digits, so the keys are loaded as `driver:000000012345`.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use quiver_client::Value;
use serde_json::json;

use crate::online::{LOAD_BATCH, chunk_rows};
use crate::output::{Format, Out};

const FIELDS: [&str; 10] = ["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "i0", "i1"];

#[derive(clap::Args)]
pub struct Args {
    /// Port of a Redis server on 127.0.0.1 that this may write `driver:*` hashes into.
    #[arg(long)]
    port: u16,
    /// Drivers loaded, as `online --entities`.
    #[arg(long, default_value_t = 100_000)]
    entities: i64,
    /// Concurrent connections, comma-separated.
    #[arg(long, default_value = "1,16,64")]
    concurrency: String,
    /// Seconds per read benchmark (redis-benchmark counts requests: a short first run sets the count).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// As `online --quick`: 5,000 drivers, 0.5 s per read benchmark.
    #[arg(long)]
    quick: bool,
    /// The redis-benchmark program.
    #[arg(long, default_value = "redis-benchmark")]
    redis_benchmark: String,
    /// `json`: the figures as one JSON object on stdout, the text on stderr.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// A RESP connection that sends commands and reads the replies it needs: integers, simple
/// strings and bulk strings.
struct Resp {
    writer: BufWriter<TcpStream>,
    reader: BufReader<TcpStream>,
}

enum Reply {
    Int(i64),
    Text(String),
}

impl Resp {
    fn connect(port: u16) -> Result<Resp> {
        let stream =
            TcpStream::connect(("127.0.0.1", port)).with_context(|| format!("connecting to Redis on {port}"))?;
        stream.set_nodelay(true)?;
        Ok(Resp { writer: BufWriter::with_capacity(1 << 20, stream.try_clone()?), reader: BufReader::new(stream) })
    }

    fn send(&mut self, args: &[&[u8]]) -> Result<()> {
        write!(self.writer, "*{}\r\n", args.len())?;
        for arg in args {
            write!(self.writer, "${}\r\n", arg.len())?;
            self.writer.write_all(arg)?;
            self.writer.write_all(b"\r\n")?;
        }
        Ok(())
    }

    fn reply(&mut self) -> Result<Reply> {
        self.writer.flush()?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at_checked(1).context("Redis closed the connection")?;
        match kind {
            ":" => Ok(Reply::Int(rest.parse()?)),
            "+" => Ok(Reply::Text(rest.to_string())),
            "$" => {
                let len: usize = rest.parse()?;
                let mut data = vec![0; len + 2];
                self.reader.read_exact(&mut data)?;
                data.truncate(len);
                Ok(Reply::Text(String::from_utf8(data)?))
            }
            "-" => bail!("Redis answered an error: {rest}"),
            _ => bail!("unexpected Redis reply {line:?}"),
        }
    }

    fn text(&mut self, args: &[&[u8]]) -> Result<String> {
        self.send(args)?;
        match self.reply()? {
            Reply::Text(t) => Ok(t),
            Reply::Int(i) => Ok(i.to_string()),
        }
    }

    /// A field of `INFO section`, e.g. `redis_version`.
    fn info(&mut self, section: &str, field: &str) -> Result<String> {
        let info = self.text(&[b"INFO", section.as_bytes()])?;
        let prefix = format!("{field}:");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_string())
            .with_context(|| format!("no {field} in Redis' INFO {section}"))
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::Float64(v) => v.to_string(),
        Value::Int64(v) => v.to_string(),
        other => format!("{other:?}"),
    }
}

/// `HSET driver:{id} f0 … i1` for every driver, the values of `online`'s load, one pipeline of
/// `LOAD_BATCH` commands at a time. Returns seconds.
fn load(redis: &mut Resp, entities: i64) -> Result<f64> {
    let started = Instant::now();
    let ids: Vec<i64> = (0..entities).collect();
    for (n, ids) in ids.chunks(LOAD_BATCH).enumerate() {
        let rows = chunk_rows(n, ids, 0);
        for (id, row) in ids.iter().zip(&rows) {
            let key = format!("driver:{id:012}");
            let values: Vec<String> = FIELDS.iter().map(|f| row.get(*f).map(value_text).unwrap_or_default()).collect();
            let mut args: Vec<&[u8]> = vec![b"HSET", key.as_bytes()];
            for (field, value) in FIELDS.iter().zip(&values) {
                args.push(field.as_bytes());
                args.push(value.as_bytes());
            }
            redis.send(&args)?;
        }
        for _ in ids {
            redis.reply()?;
        }
    }
    let keys = redis.text(&[b"DBSIZE"])?.parse::<i64>()?;
    if keys < entities {
        bail!("Redis holds {keys} keys after loading {entities} drivers");
    }
    Ok(started.elapsed().as_secs_f64())
}

struct Figures {
    commands: u64,
    secs: f64,
    commands_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
}

/// Reads redis-benchmark's report: the throughput and latency summaries, and p99.9 as the first
/// line of the percentile distribution at or above 99.9% (its lines fall at 99.805%, 99.902%…).
fn parse_report(report: &str) -> Result<Figures> {
    let ms_to_us = |ms: &str| -> Result<f64> { Ok((ms.parse::<f64>()? * 1000.0).round()) };
    let mut lines = report.lines().map(str::trim);
    let (mut commands, mut secs, mut rate, mut summary, mut p999) = (None, None, None, None, None);
    while let Some(line) = lines.next() {
        if let Some((n, rest)) = line.split_once(" requests completed in ") {
            commands = Some(n.trim().parse::<u64>()?);
            secs = Some(rest.trim_end_matches("seconds").trim().parse::<f64>()?);
        } else if let Some(rest) = line.strip_prefix("throughput summary:") {
            rate = Some(rest.trim().trim_end_matches("requests per second").trim().parse::<f64>()?);
        } else if line.starts_with("avg") && line.contains("p99") {
            let header: Vec<&str> = line.split_whitespace().collect();
            let values: Vec<&str> =
                lines.next().context("no values under the latency summary")?.split_whitespace().collect();
            let at = |name: &str| header.iter().position(|h| *h == name).and_then(|i| values.get(i));
            let p50 = ms_to_us(at("p50").context("no p50 in the latency summary")?)?;
            let p99 = ms_to_us(at("p99").context("no p99 in the latency summary")?)?;
            summary = Some((p50, p99));
        } else if p999.is_none()
            && let Some((pct, rest)) = line.split_once("% <= ")
            && pct.parse::<f64>().is_ok_and(|p| p >= 99.9)
        {
            p999 = Some(ms_to_us(rest.split_whitespace().next().unwrap_or_default())?);
        }
    }
    let (p50_us, p99_us) = summary.context("no latency summary in redis-benchmark's report")?;
    Ok(Figures {
        commands: commands.context("no request count in redis-benchmark's report")?,
        secs: secs.context("no duration in redis-benchmark's report")?,
        commands_per_sec: rate.context("no throughput summary in redis-benchmark's report")?,
        p50_us,
        p99_us,
        p999_us: p999.context("no latency distribution in redis-benchmark's report")?,
    })
}

fn redis_benchmark(args: &Args, entities: i64, concurrency: usize, pipeline: usize, commands: u64) -> Result<Figures> {
    let mut cmd = Command::new(&args.redis_benchmark);
    cmd.args(["-h", "127.0.0.1", "-p", &args.port.to_string(), "-c", &concurrency.to_string()])
        .args(["-n", &commands.to_string(), "-r", &entities.to_string(), "-P", &pipeline.to_string()])
        .args(["HMGET", "driver:__rand_int__"])
        .args(FIELDS);
    let output = cmd.output().with_context(|| format!("running {}", args.redis_benchmark))?;
    if !output.status.success() {
        bail!("{} exited with {}: {}", args.redis_benchmark, output.status, String::from_utf8_lossy(&output.stderr));
    }
    // Progress lines end in '\r'; the report proper is what follows the last one.
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse_report(&stdout.replace('\r', "\n"))
}

pub fn run(mut args: Args) -> Result<()> {
    if args.quick {
        args.entities = 5_000;
        args.seconds = 0.5;
    }
    let out = Out::new(args.format);
    let concurrency: Vec<usize> = args
        .concurrency
        .split(',')
        .map(|n| n.trim().parse().with_context(|| format!("{n:?} is not a count")))
        .collect::<Result<_>>()?;
    let mut redis = Resp::connect(args.port)?;
    let version = redis.info("server", "redis_version")?;
    let load_secs = load(&mut redis, args.entities)?;
    out.say(format!(
        "redis {version} on 127.0.0.1:{}: {} drivers x 10 fields loaded in {load_secs:.2} s",
        args.port, args.entities
    ));
    let misses_before: u64 = redis.info("stats", "keyspace_misses")?.parse()?;

    out.say(format!(
        "\nredis-benchmark HMGET of 10 fields ({} s each; 100 entities = a pipeline of 100 HMGETs):",
        args.seconds
    ));
    out.say(format!(
        "{:<10} {:>11} {:>12} {:>12} {:>9} {:>9} {:>10}",
        "entities", "concurrency", "HMGET/s", "requests/s", "p50 us", "p99 us", "p99.9 us"
    ));
    let mut reads = Vec::new();
    for per_request in [1usize, 100] {
        for &c in &concurrency {
            // A first run long enough to count on, then one of about `seconds` at its rate.
            let first = ((2_000.max(20 * c) * per_request) as u64).min(1_000_000);
            let mut f = redis_benchmark(&args, args.entities, c, per_request, first)?;
            if f.secs < args.seconds / 2.0 {
                let n = (f.commands_per_sec * args.seconds) as u64 / per_request as u64 * per_request as u64;
                f = redis_benchmark(&args, args.entities, c, per_request, n.max(first))?;
            }
            let requests_per_sec = f.commands_per_sec / per_request as f64;
            out.say(format!(
                "{per_request:<10} {c:>11} {:>12.0} {requests_per_sec:>12.0} {:>9} {:>9} {:>10}",
                f.commands_per_sec, f.p50_us, f.p99_us, f.p999_us
            ));
            reads.push(json!({"entities": per_request, "pipeline": per_request, "concurrency": c,
                              "commands": f.commands, "secs": f.secs, "commands_per_sec": f.commands_per_sec,
                              "requests_per_sec": requests_per_sec,
                              "p50_us": f.p50_us, "p99_us": f.p99_us, "p999_us": f.p999_us}));
        }
    }
    let misses = redis.info("stats", "keyspace_misses")?.parse::<u64>()? - misses_before;
    if misses > 0 {
        out.say(format!("warning: {misses} HMGETs found no key: the benchmark's keys do not match the loaded ones"));
    }
    out.figures(&json!({
        "kind": "redis", "version": version, "entities": args.entities, "seconds": args.seconds,
        "load_secs": load_secs, "misses": misses, "reads": reads,
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_figures_of_a_redis_benchmark_report() {
        let report = "\
====== HMGET driver:__rand_int__ f0 i0 ======
  20000 requests completed in 0.31 seconds
  4 parallel clients

Latency by percentile distribution:
0.000% <= 0.023 milliseconds (cumulative count 1732)
50.000% <= 0.047 milliseconds (cumulative count 14713)
99.805% <= 0.239 milliseconds (cumulative count 19962)
99.902% <= 0.279 milliseconds (cumulative count 19983)
99.951% <= 0.319 milliseconds (cumulative count 19991)
100.000% <= 0.375 milliseconds (cumulative count 20000)

Cumulative distribution of latencies:
98.525% <= 0.103 milliseconds (cumulative count 19705)
100.000% <= 0.407 milliseconds (cumulative count 20000)

Summary:
  throughput summary: 65359.48 requests per second
  latency summary (msec):
          avg       min       p50       p95       p99       max
        0.043     0.016     0.047     0.071     0.127     0.375
";
        let f = parse_report(report).unwrap();
        assert_eq!((f.commands, f.secs, f.commands_per_sec), (20_000, 0.31, 65_359.48));
        assert_eq!((f.p50_us, f.p99_us, f.p999_us), (47.0, 127.0, 279.0));
    }
}
