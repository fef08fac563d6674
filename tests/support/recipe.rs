//! The README's shell recipes, run as written: a section's first `sh` block, with the
//! addresses and paths a test must change (free ports, a temporary directory) replaced.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The first `sh` block after the heading `heading` in the README, with each `(old, new)`
/// of `replace` replaced; each `old` must be there, so a README that changed fails here.
pub fn readme_block(heading: &str, replace: &[(&str, &str)]) -> String {
    replaced(&readme_blocks(heading)[0], replace)
}

/// Every `sh` block of the README's section under `heading`, in order.
pub fn readme_blocks(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme.find(heading).unwrap_or_else(|| panic!("the README has no {heading:?}")) + heading.len();
    let section = &readme[start..];
    let section = &section[..section.find("\n##").unwrap_or(section.len())];
    let blocks: Vec<String> =
        section.split("```sh\n").skip(1).filter_map(|b| b.split("```").next()).map(str::to_string).collect();
    assert!(!blocks.is_empty(), "the README's {heading:?} has no sh block");
    blocks
}

/// `block` with each `(old, new)` of `replace` replaced; each `old` must be there.
pub fn replaced(block: &str, replace: &[(&str, &str)]) -> String {
    let mut block = block.to_string();
    for (old, new) in replace {
        assert!(block.contains(old), "the recipe no longer has {old:?}:\n{block}");
        block = block.replace(old, new);
    }
    block
}

/// The commands of a block: comment lines dropped, lines ending in `\\` joined to the next.
pub fn commands(block: &str) -> Vec<String> {
    let joined = block.replace("\\\n", " ");
    joined.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect()
}

/// A shell script started in `dir` in a process group of its own, with the built binaries
/// first on its path; the group (the nodes it left in the background too) is killed when
/// dropped.
pub struct Recipe(Child);

impl Recipe {
    pub fn run(dir: &Path, script: &str) -> Recipe {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("recipe.log")).unwrap();
        let child = shell(dir, script)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Recipe(child)
    }
}

impl Drop for Recipe {
    fn drop(&mut self) {
        // `--` before the negative id: it names the process group, not a signal.
        let _ = Command::new("kill").args(["-9", "--", &format!("-{}", self.0.id())]).status();
        let _ = self.0.wait();
    }
}

/// Runs `script` in `dir` to its end, stopping at the first failing command; answers its
/// output, or panics with it.
pub fn run_to_end(dir: &Path, script: &str) -> String {
    let (ok, text) = run(dir, script);
    assert!(ok, "the recipe failed:\n{script}\n---\n{text}");
    text
}

/// Runs `script` in `dir`, stopping at the first failing command; answers whether it
/// succeeded, and its output.
pub fn run(dir: &Path, script: &str) -> (bool, String) {
    let out = shell(dir, &format!("set -e\n{script}")).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn shell(dir: &Path, script: &str) -> Command {
    let bin = crate::binary("quiver-node").unwrap();
    let path = format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new("bash");
    command.args(["-c", script]).current_dir(dir).env("PATH", path).env_remove("QUIVER_CONFIG");
    command
}
