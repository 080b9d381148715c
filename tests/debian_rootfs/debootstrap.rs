//! The debootstrap'd Debian trees the end-to-end tests share, each made once under
//! `$CARGO_TARGET_TMPDIR/NAME` and reused by later runs and by every test binary that includes
//! this module (`tests/debian_rootfs.rs`, `tests/debian_server_vet.rs`,
//! `vetter/tests/dpkg_verify.rs`). Needs root and network access to deb.debian.org. Tests that
//! change files copy the tree first (`cp -a`).
#![allow(dead_code)]

use std::sync::OnceLock;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The tree `debootstrap ARGS... DIR MIRROR` makes, built on first use and cached.
///
/// Layout: `$CARGO_TARGET_TMPDIR/NAME/root` (the tree) and `$CARGO_TARGET_TMPDIR/NAME/complete`
/// (the completion marker: the debootstrap command). Across concurrent runs the tree is built
/// under a private `NAME.partial-PID` directory, marker included, and renamed into place in one
/// atomic `rename(2)`: a run that loses the race finds the winner's complete tree and drops its
/// own. A directory without the marker cannot appear under the final name.
pub fn cached(name: &str, args: &[&str], mirror: &str) -> Result<PathBuf, String> {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let done = base.join(name);
    if done.join("complete").is_file() && done.join("root").is_dir() {
        return Ok(done.join("root"));
    }
    std::fs::create_dir_all(base).map_err(|e| format!("create {}: {e}", base.display()))?;
    let partial = base.join(format!("{name}.partial-{}", std::process::id()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .map_err(|e| format!("remove {}: {e}", partial.display()))?;
    }
    std::fs::create_dir(&partial).map_err(|e| format!("create {}: {e}", partial.display()))?;
    let started = Instant::now();
    let out = Command::new("debootstrap")
        .args(args)
        .arg(partial.join("root"))
        .arg(mirror)
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
    let marker = format!("debootstrap {} DIR {mirror}\n", args.join(" "));
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

/// The suite and mirror of the shared minbase tree.
pub const SUITE: &str = "bookworm";
pub const MIRROR: &str = "http://deb.debian.org/debian";

/// The shared `debootstrap --variant=minbase --include=openssh-server bookworm` tree, made on
/// first use (see [`cached`]). A failing debootstrap fails the test with its output.
pub fn debian_root() -> &'static Path {
    static ROOT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match ROOT.get_or_init(|| {
        cached(
            "debian-bookworm",
            &["--variant=minbase", "--include=openssh-server", SUITE],
            MIRROR,
        )
    }) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}
