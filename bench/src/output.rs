//! Where a subcommand's figures go: as text for a person, or with `--format json` as one JSON
//! object on stdout (the progress text then goes to stderr) for `bench/run.sh` to put in its table.

use clap::ValueEnum;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub struct Out {
    format: Format,
}

impl Out {
    pub fn new(format: Format) -> Out {
        Out { format }
    }

    /// A line for a person: on stdout, or on stderr when stdout carries the JSON.
    pub fn say(&self, line: impl AsRef<str>) {
        match self.format {
            Format::Text => println!("{}", line.as_ref()),
            Format::Json => eprintln!("{}", line.as_ref()),
        }
    }

    /// The figures, printed only with `--format json`: the text already said them.
    pub fn figures(&self, figures: &serde_json::Value) {
        if self.format == Format::Json {
            println!("{figures}");
        }
    }
}

/// A process's peak resident memory (Linux `VmHWM`), KiB: over its life, or since the last
/// `reset_peak`.
pub fn peak_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM:")
}

/// A process's resident memory now (Linux `VmRSS`), KiB.
pub fn resident_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    use anyhow::Context;
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = status.lines().find_map(|l| l.strip_prefix(field)).with_context(|| format!("no {field} in {path}"))?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}

/// CPU time a process has used so far, user and system over all its threads, in seconds
/// (Linux `/proc/PID/stat`, in ticks of USER_HZ, which the kernel fixes at 100 for user space).
pub fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    use anyhow::Context;
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command's closing parenthesis, from the third (state): utime is the
    // 14th, stime the 15th.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).with_context(|| format!("{path} is too short"))?.parse()?)
    };
    Ok((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

/// Sets a process's peak resident memory back to its current size (Linux 4.0+, writing 5 to
/// `clear_refs`), so that the next `peak_kib` is the peak of one phase. False where refused.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
