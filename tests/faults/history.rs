//! A run's history as JSON lines, kept for inspection and checked again with `--check`.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::checker::{Kind, Op};

fn to_json(op: &Op) -> Value {
    let mut line = json!({ "client": op.client, "key": op.key, "call": op.call, "ret": op.ret });
    match op.kind {
        Kind::Write { ts, value } => {
            line["type"] = "write".into();
            line["ts"] = ts.into();
            line["value"] = value.into();
        }
        Kind::Read { seen } => {
            line["type"] = "read".into();
            line["seen"] = seen.map_or(Value::Null, |(ts, value)| json!([ts, value]));
        }
    }
    line
}

fn from_json(line: &Value) -> Option<Op> {
    let kind = match line["type"].as_str()? {
        "write" => Kind::Write { ts: line["ts"].as_i64()?, value: line["value"].as_u64()? },
        "read" => Kind::Read {
            seen: match &line["seen"] {
                Value::Null => None,
                seen => Some((seen[0].as_i64()?, seen[1].as_u64()?)),
            },
        },
        _ => return None,
    };
    Some(Op {
        client: u32::try_from(line["client"].as_u64()?).ok()?,
        key: line["key"].as_i64()?,
        call: line["call"].as_u64()?,
        ret: line["ret"].as_u64(),
        kind,
    })
}

pub fn save(path: &Path, ops: &[Op]) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for op in ops {
        writeln!(out, "{}", to_json(op))?;
    }
    Ok(out.flush()?)
}

pub fn load(path: &Path) -> Result<Vec<Op>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut ops = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let value: Value = serde_json::from_str(&line?).with_context(|| format!("line {} is not JSON", n + 1))?;
        ops.push(from_json(&value).with_context(|| format!("line {} is not an operation", n + 1))?);
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_history_loads_as_it_was() {
        let ops = vec![
            Op { client: 3, key: -2, call: 10, ret: None, kind: Kind::Write { ts: -5, value: u64::MAX } },
            Op { client: 4, key: 9, call: 11, ret: Some(20), kind: Kind::Read { seen: Some((7, 8)) } },
            Op { client: 4, key: 9, call: 21, ret: Some(30), kind: Kind::Read { seen: None } },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        save(&path, &ops).unwrap();
        assert_eq!(load(&path).unwrap(), ops);
        std::fs::write(&path, "{\"type\":\"read\"}\n").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("line 1"));
    }
}
