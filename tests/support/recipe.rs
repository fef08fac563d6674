//! The README's shell recipes, run as written: a section's first `sh` block, with the
//! addresses and paths a test must change (free ports, a temporary directory) replaced.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The first `sh` block after the heading `heading` in the README, with each `(old, new)`
/// of `replace` replaced; each `old` must be there, so a README that changed fails here.
pub fn readme_block(heading: &str, replace: &[(&str, &str)]) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = &readme[readme.find(heading).unwrap_or_else(|| panic!("the README has no {heading:?}"))..];
    let mut block = section.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).unwrap().to_string();
    for (old, new) in replace {
        assert!(block.contains(old), "the recipe under {heading:?} no longer has {old:?}:\n{block}");
        block = block.replace(old, new);
    }
    block
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
    let out = shell(dir, &format!("set -e\n{script}")).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the recipe failed:\n{script}\n---\n{text}");
    text
}

fn shell(dir: &Path, script: &str) -> Command {
    let bin = crate::binary("quiver-node").unwrap();
    let path = format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new("bash");
    command.args(["-c", script]).current_dir(dir).env("PATH", path).env_remove("QUIVER_CONFIG");
    command
}
