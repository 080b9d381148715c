//! The workspace's `rust-version` is true: no dependency in Cargo.lock declares a newer
//! `rust_version` than the one in the root Cargo.toml (`[workspace.package]`), which every member
//! inherits. `cargo metadata --format-version 1 --locked --offline` is the oracle.

use std::process::Command;

fn parse(v: &str) -> (u64, u64, u64) {
    let mut it = v.split('.').map(|x| x.parse::<u64>().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

#[test]
fn no_dependency_needs_a_newer_rust_than_declared() {
    let o = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo");
    assert!(
        o.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).expect("metadata JSON");
    let members: Vec<&str> = m["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let ours = env!("CARGO_PKG_RUST_VERSION");
    assert!(
        !ours.is_empty(),
        "the wafer package declares no rust-version"
    );
    let mut newer = Vec::new();
    for p in m["packages"].as_array().unwrap() {
        let id = p["id"].as_str().unwrap();
        if members.contains(&id) {
            assert_eq!(
                p["rust_version"].as_str(),
                Some(ours),
                "{} does not inherit the workspace rust-version",
                p["name"]
            );
            continue;
        }
        if let Some(rv) = p["rust_version"].as_str() {
            if parse(rv) > parse(ours) {
                newer.push(format!("{} {} needs {rv}", p["name"], p["version"]));
            }
        }
    }
    assert!(
        newer.is_empty(),
        "rust-version {ours} is too old for: {}",
        newer.join(", ")
    );
}
