//! The debootstrap'd Debian tree the end-to-end tests share (`debootstrap --variant=minbase
//! --include=openssh-server bookworm`), made once under `$CARGO_TARGET_TMPDIR/debian-bookworm`
//! and reused by later runs and by every test binary that includes this module
//! (`tests/debian_rootfs.rs`, `vetter/tests/dpkg_verify.rs`). Needs root and network access to
//! deb.debian.org. Tests that change files copy the tree first (`cp -a`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// The suite and the command line, also recorded next to the tree.
pub const SUITE: &str = "bookworm";
pub const MIRROR: &str = "http://deb.debian.org/debian";

/// The debootstrap'd root directory, made on first use.
///
/// Layout: `$CARGO_TARGET_TMPDIR/debian-bookworm/root` (the tree) and
/// `$CARGO_TARGET_TMPDIR/debian-bookworm/complete` (the completion marker: the debootstrap
/// command). Within this test binary a `OnceLock` makes the tests share one build; across
/// concurrent runs the tree is built under a private `debian-bookworm.partial-PID` directory,
/// marker included, and renamed into place in one atomic `rename(2)`: a run that loses the race
/// finds the winner's complete tree and drops its own. A directory without the marker cannot
/// appear under the final name.
///
/// A failing debootstrap fails the test with its output.
pub fn debian_root() -> &'static Path {
    static ROOT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match ROOT.get_or_init(build_debian_root) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn build_debian_root() -> Result<PathBuf, String> {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let done = base.join("debian-bookworm");
    if done.join("complete").is_file() && done.join("root").is_dir() {
        return Ok(done.join("root"));
    }
    std::fs::create_dir_all(base).map_err(|e| format!("create {}: {e}", base.display()))?;
    let partial = base.join(format!("debian-bookworm.partial-{}", std::process::id()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .map_err(|e| format!("remove {}: {e}", partial.display()))?;
    }
    std::fs::create_dir(&partial).map_err(|e| format!("create {}: {e}", partial.display()))?;
    let args = ["--variant=minbase", "--include=openssh-server", SUITE];
    let started = Instant::now();
    let out = Command::new("debootstrap")
        .args(args)
        .arg(partial.join("root"))
        .arg(MIRROR)
        .output()
        .map_err(|e| {
            format!("cannot run debootstrap (Debian package debootstrap; the test needs root): {e}")
        })?;
    if !out.status.success() {
        let log = std::fs::read_to_string(partial.join("root/debootstrap/debootstrap.log"))
            .unwrap_or_default();
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(format!(
            "debootstrap {} failed ({}):\nstdout:\n{}\nstderr:\n{}\ndebootstrap.log (end):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail.join("\n")
        ));
    }
    eprintln!("debootstrap: {:.1} s", started.elapsed().as_secs_f64());
    let marker = format!("debootstrap {} DIR {MIRROR}\n", args.join(" "));
    std::fs::write(partial.join("complete"), marker).map_err(|e| format!("write marker: {e}"))?;
    match std::fs::rename(&partial, &done) {
        Ok(()) => {}
        Err(_) if done.join("complete").is_file() => {
            // Another run finished first; use its tree.
            std::fs::remove_dir_all(&partial)
                .map_err(|e| format!("remove {}: {e}", partial.display()))?;
        }
        Err(_) => {
            // A leftover without the marker (e.g. made by hand): replace it.
            std::fs::remove_dir_all(&done)
                .map_err(|e| format!("remove {}: {e}", done.display()))?;
            std::fs::rename(&partial, &done)
                .map_err(|e| format!("rename {} -> {}: {e}", partial.display(), done.display()))?;
        }
    }
    Ok(done.join("root"))
}
