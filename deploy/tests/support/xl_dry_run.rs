//! Runs Xen's own `xl -N create CFG` (dry run: parse, print libxl's domain configuration as
//! JSON) through `deploy/tests/tools/xl-dry-run`, so tests check what Xen makes of an xl.cfg.
//! Shared by `deploy/tests/xl_xen.rs` and `tests/cli_deploy.rs` (`#[path]` include).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The tool's folder in the repository.
fn tool_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(
        if Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/tests/tools/xl-dry-run")
            .is_dir()
        {
            "deploy/tests/tools/xl-dry-run"
        } else {
            "tests/tools/xl-dry-run"
        },
    )
}

/// The LD_PRELOAD shim, compiled once per test target into `CARGO_TARGET_TMPDIR`.
fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let xl = std::fs::read_dir("/usr/lib")
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin/xl"))
            .find(|p| p.is_file() && p.to_string_lossy().contains("/xen-"));
        assert!(
            xl.is_some(),
            "xl not found under /usr/lib/xen-*/bin: install the Debian package xen-utils-4.17"
        );
        // CARGO_TARGET_TMPDIR exists for integration tests only; a unit-test module (the xl.cfg
        // shapes in deploy/src/xl_xen_tests.rs) uses the system's temporary folder.
        let dir = match option_env!("CARGO_TARGET_TMPDIR") {
            Some(t) => Path::new(t).join("xl-dry-run"),
            None => std::env::temp_dir().join(format!("wafer-xl-dry-run-{}", std::process::id())),
        };
        std::fs::create_dir_all(&dir).unwrap();
        let so = dir.join("shim.so");
        // Each test binary compiles its own copy and renames it into place: never a half-written
        // library, whichever binary gets there first.
        let tmp = dir.join(format!("shim.{}.so", std::process::id()));
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&tmp)
            .arg(tool_dir().join("shim.c"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run cc: {e}: install the Debian package gcc"));
        assert!(
            out.status.success(),
            "compiling the xl-dry-run shim failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, &so).unwrap();
        so
    })
}

/// What xl made of `cfg`: its JSON (libxl's `libxl_domain_config`) and what it said on stderr
/// besides "Parsing config from". Panics with xl's own message when xl refuses the file.
pub fn xl_run(cfg: &Path) -> (serde_json::Value, String) {
    let out = Command::new("bash")
        .arg(tool_dir().join("xl-dry-run"))
        .arg(cfg)
        .env("XL_DRY_RUN_SHIM", shim())
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "xl -N create {} refused it ({}):\n{stderr}\n--- the file:\n{}",
        cfg.display(),
        out.status,
        std::fs::read_to_string(cfg).unwrap_or_default()
    );
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "xl's output is not JSON ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let said = stderr
        .lines()
        .filter(|l| !l.starts_with("Parsing config from ") && !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    (json, said)
}

/// xl's JSON for `cfg` (see [`xl_run`]).
pub fn xl_json(cfg: &Path) -> serde_json::Value {
    xl_run(cfg).0
}
