//! The hosts of a fault run, made on this machine and removed after it: one network
//! namespace per node on a bridge (so a partition is real packet loss), each node's data on
//! an ext4 file system of its own on a loop device (to fill it), in a blkio cgroup (to slow
//! its writes), its wall clock under libfaketime (to jump it). Needs root.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// libfaketime's preload library, from Debian's `faketime` package.
pub const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Size of each node's file system: large enough for a run, small enough to fill at once.
const DISK_MIB: u64 = 768;

/// Runs a command, failing with what it printed.
pub fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("running {}", args[0]))?;
    if !out.status.success() {
        bail!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Runs a command whose failure changes nothing (removing what may be gone already).
fn quietly(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).output();
}

pub struct Host {
    pub ns: String,
    pub ip: String,
    pub mount: PathBuf,
    loop_dev: Option<String>,
    cgroup: PathBuf,
    pub clock_file: PathBuf,
}

impl Host {
    /// The node's data directory: the file system's root, so its log (beside it) outlives
    /// the run.
    pub fn data_dir(&self) -> &Path {
        &self.mount
    }

    /// `ip netns exec NS`: the prefix a node of this host runs under.
    pub fn prefix(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.ns].iter().map(|s| s.to_string()).collect()
    }

    fn exec(&self, args: &[&str]) -> Result<()> {
        run(&[&["ip", "netns", "exec", self.ns.as_str()], args].concat())
    }

    /// Drops every packet between this host and `others`, both ways.
    pub fn cut_from(&self, others: &[&Host]) -> Result<()> {
        for other in others {
            self.exec(&["iptables", "-A", "INPUT", "-s", &other.ip, "-j", "DROP"])?;
            self.exec(&["iptables", "-A", "OUTPUT", "-d", &other.ip, "-j", "DROP"])?;
        }
        Ok(())
    }

    pub fn heal(&self) -> Result<()> {
        self.exec(&["iptables", "-F"])
    }

    /// Puts a node's process (and so its threads) in this host's cgroup.
    pub fn adopt(&self, pid: u32) -> Result<()> {
        std::fs::write(self.cgroup.join("cgroup.procs"), pid.to_string()).context("joining the blkio cgroup")
    }

    /// Limits the host's writes to `iops` a second; `None` lifts the limit.
    pub fn throttle(&self, iops: Option<u32>) -> Result<()> {
        let dev = self.loop_dev.as_deref().context("no loop device")?;
        let numbers = std::fs::read_to_string(format!("/sys/block/{}/dev", dev.trim_start_matches("/dev/")))?;
        let line = format!("{} {}", numbers.trim(), iops.unwrap_or(0));
        std::fs::write(self.cgroup.join("blkio.throttle.write_iops_device"), line).context("setting the write limit")
    }

    /// Fills the file system but for a few blocks (`true`), or frees it again (`false`).
    pub fn fill(&self, full: bool) -> Result<()> {
        let ballast = self.mount.join("ballast");
        if !full {
            std::fs::remove_file(&ballast)
                .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })?;
            return Ok(());
        }
        let stat = free_bytes(&self.mount)?;
        let free = stat.saturating_sub(64 * 1024);
        run(&["fallocate", "-l", &free.to_string(), ballast.to_str().context("path")?])
    }

    /// Moves the host's wall clock `seconds` away from the real one (0: back).
    pub fn set_clock(&self, seconds: i64) -> Result<()> {
        std::fs::write(&self.clock_file, format!("{seconds:+}s\n")).context("writing the clock offset")
    }
}

/// Bytes free on the file system at `path`, as `df` says.
fn free_bytes(path: &Path) -> Result<u64> {
    let out = Command::new("df").args(["--output=avail", "-B1"]).arg(path).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1).and_then(|l| l.trim().parse().ok()).context("reading df")
}

pub struct Lab {
    pub hosts: Vec<Host>,
    bridge: String,
    pub subnet: String,
}

impl Lab {
    /// Makes `nodes` hosts under `dir`. `tag` (a small number) keeps two runs apart.
    pub fn create(dir: &Path, nodes: usize, tag: u32) -> Result<Lab> {
        if !Path::new(FAKETIME_LIB).exists() {
            bail!("{FAKETIME_LIB} is missing: apt-get install faketime");
        }
        let subnet = format!("10.216.{tag}");
        let mut lab = Lab { hosts: Vec::new(), bridge: format!("qfb{tag}"), subnet: subnet.clone() };
        run(&["ip", "link", "add", &lab.bridge, "type", "bridge"])?;
        run(&["ip", "addr", "add", &format!("{subnet}.1/24"), "dev", &lab.bridge])?;
        run(&["ip", "link", "set", &lab.bridge, "up"])?;
        // Docker's FORWARD policy drops bridged packets when br_netfilter is loaded.
        run(&["iptables", "-I", "FORWARD", "-i", &lab.bridge, "-o", &lab.bridge, "-j", "ACCEPT"])?;
        for index in 0..nodes {
            let name = format!("qf{tag}n{}", index + 1);
            lab.hosts.push(Host {
                ip: format!("{subnet}.{}", 11 + index),
                mount: dir.join(format!("node{}", index + 1)),
                loop_dev: None,
                cgroup: PathBuf::from(format!("/sys/fs/cgroup/blkio/{name}")),
                clock_file: dir.join(format!("node{}.clock", index + 1)),
                ns: name,
            });
            // Made as it is listed, so a failure half way still removes all of it.
            lab.set_up(index)?;
        }
        Ok(lab)
    }

    fn set_up(&mut self, index: usize) -> Result<()> {
        let bridge = self.bridge.clone();
        let host = &mut self.hosts[index];
        let image = host.mount.with_extension("img");
        let name = host.ns.clone();
        let (outer, inner) = (format!("{name}h"), format!("{name}i"));
        run(&["ip", "netns", "add", &name])?;
        run(&["ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner])?;
        run(&["ip", "link", "set", &outer, "master", &bridge])?;
        run(&["ip", "link", "set", &outer, "up"])?;
        run(&["ip", "link", "set", &inner, "netns", &name])?;
        host.exec(&["ip", "addr", "add", &format!("{}/24", host.ip), "dev", &inner])?;
        host.exec(&["ip", "link", "set", &inner, "up"])?;
        host.exec(&["ip", "link", "set", "lo", "up"])?;

        run(&["truncate", "-s", &format!("{DISK_MIB}M"), image.to_str().context("path")?])?;
        let out = Command::new("losetup").args(["-f", "--show"]).arg(&image).output()?;
        if !out.status.success() {
            bail!("losetup: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        host.loop_dev = Some(dev.clone());
        run(&["mkfs.ext4", "-q", &dev])?;
        std::fs::create_dir_all(&host.mount)?;
        run(&["mount", &dev, host.mount.to_str().context("path")?])?;
        std::fs::create_dir_all(&host.cgroup).context("making a blkio cgroup (cgroup v1 blkio needed)")?;
        host.set_clock(0)
    }

    /// The environment a node runs in: its wall clock read from its clock file.
    pub fn clock_env(host: &Host) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), FAKETIME_LIB.into()),
            ("FAKETIME_TIMESTAMP_FILE".into(), host.clock_file.display().to_string()),
            ("FAKETIME_CACHE_DURATION".into(), "1".into()),
            // Only the wall clock jumps, as under a stepping NTP; timers run on.
            ("DONT_FAKE_MONOTONIC".into(), "1".into()),
        ]
    }
}

impl Drop for Lab {
    /// Everything `create` made goes, in reverse; the node processes are gone by now.
    fn drop(&mut self) {
        for host in &self.hosts {
            quietly(&["umount", "-l", &host.mount.display().to_string()]);
            if let Some(dev) = &host.loop_dev {
                quietly(&["losetup", "-d", dev]);
            }
            let _ = std::fs::remove_file(host.mount.with_extension("img"));
            let _ = std::fs::remove_dir(&host.cgroup);
            // The veth pair goes with the namespace.
            quietly(&["ip", "netns", "del", &host.ns]);
        }
        quietly(&["iptables", "-D", "FORWARD", "-i", &self.bridge, "-o", &self.bridge, "-j", "ACCEPT"]);
        quietly(&["ip", "link", "del", &self.bridge]);
    }
}
