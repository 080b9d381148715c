//! A library user can do everything `wafer vet` does: [`vetter::vet::vet`] on a bundle (opened
//! with the bundle and rootfs crates) and on a directory gives exactly the verdict JSON the `wafer`
//! binary prints for them (at the same evaluation time).

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;

const POLICY: &str = r#"[policy]
name = "test site"
fail_on = "medium"

[[privileged]]
id = "priv.allowlist"
severity = "high"
check = ["setuid", "setgid", "capabilities"]
allow = []

[[files]]
id = "files.empty-passwords"
severity = "critical"
check = "empty-passwords"
"#;

/// `wafer vet IMAGE --policy POLICY --json EXTRA..`: exit status and verdict.
fn cli(image: &Path, policy: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["vet", s(image), "--policy", s(policy), "--json"];
    args.extend_from_slice(extra);
    let o = wafer(&args);
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&o), stderr(&o)));
    (o.status.code().unwrap_or(-1), v)
}

/// The library's verdict as JSON (the same serialisation `--json` prints).
fn json(v: &vetter::policy::Verdict) -> serde_json::Value {
    serde_json::from_str(&vetter::report::json(v)).unwrap()
}

#[test]
fn the_library_entry_point_gives_the_commands_verdict() {
    let f = Fixture::new(|r| put(r, "usr/bin/evil", &fake_elf()));
    let policy_file = f.path("policy.toml");
    std::fs::write(&policy_file, POLICY).unwrap();
    let bad = f.build(
        &f.recipe_named(
            "v1.toml",
            "cms-squid",
            "1.0",
            "[[step]]\ntype = \"chmod\"\npaths = [\"/usr/bin/evil\"]\nmode = \"4755\"\n",
        ),
        "squid-1.0",
    );
    let policy = vetter::policy::Policy::load(&policy_file).unwrap();

    // The bundle, opened as a library user would: the bundle crate, the ext reader.
    let b = bundle::Bundle::open(&bad).unwrap();
    let disk = b.disk();
    let src: Arc<dyn rootfs::ReadAt> = Arc::new(disk.reader().unwrap());
    let img = rootfs::ext::read_image(src, &rootfs::ext::ReadOptions::default()).unwrap();
    let damage = rootfs::open::ext_damage(&img.info);
    let source = disk.path().display().to_string();
    let msha = b.manifest_sha256();
    let opened = vetter::vet::VetImage {
        tree: &img.tree,
        kind: "bundle",
        source: &source,
        damage: &damage,
        manifest: Some(b.manifest()),
        manifest_sha256: Some(&msha),
        disk: Some(disk.path()),
    };

    let (code, want) = cli(&bad, &policy_file, &[]);
    assert_eq!(code, 1);
    let mut input = vetter::vet::VetInput {
        image: opened,
        policy: &policy,
        since: None,
        name: None,
        vo: None,
        fallback_name: "squid-1.0",
        fail_on: None,
        now: want["evaluated_at"].as_i64().unwrap(),
        inspect: vetter::InspectOptions::default(),
    };
    let v = vetter::vet::vet(&input).unwrap().verdict;
    assert_eq!(v.exit_code(), code);
    assert_eq!(json(&v), want);
    // The image facts the command records are the bundle's own files' digests.
    assert_eq!(
        want["image"]["compressed_sha256"],
        sha256_hex(&bad.join("disk.img.zst"))
    );
    assert_eq!(
        want["image"]["manifest_sha256"],
        sha256_hex(&bad.join("wafer.json"))
    );

    // --since the same image, --name, --vo, --fail-on.
    let (code, want) = cli(
        &bad,
        &policy_file,
        &[
            "--since",
            s(&bad),
            "--name",
            "other",
            "--vo",
            "atlas",
            "--fail-on",
            "critical",
        ],
    );
    assert_eq!(code, 0);
    input.since = Some(opened);
    input.name = Some("other");
    input.vo = Some("atlas");
    input.fail_on = Some(vetter::policy::Severity::Critical);
    input.now = want["evaluated_at"].as_i64().unwrap();
    let v = vetter::vet::vet(&input).unwrap().verdict;
    assert_eq!(v.exit_code(), code);
    assert_eq!(json(&v), want);
    assert_eq!(want["totals"]["known"], 1);

    // A directory: the tree read by rootfs, named by its file name.
    let root = f.path("root");
    let (code, want) = cli(&root, &policy_file, &[]);
    let o = rootfs::open::open_source(
        &root,
        &rootfs::open::OpenOptions {
            descend_single_dir: true,
            ..Default::default()
        },
    )
    .unwrap();
    let source = root.display().to_string();
    let v = vetter::vet::vet(&vetter::vet::VetInput {
        image: vetter::vet::VetImage {
            tree: &o.tree,
            kind: "directory",
            source: &source,
            damage: &o.damage,
            manifest: None,
            manifest_sha256: None,
            disk: None,
        },
        policy: &policy,
        since: None,
        name: None,
        vo: None,
        fallback_name: "root",
        fail_on: None,
        now: want["evaluated_at"].as_i64().unwrap(),
        inspect: vetter::InspectOptions::default(),
    })
    .unwrap()
    .verdict;
    assert_eq!(v.exit_code(), code);
    assert_eq!(json(&v), want);
    assert_eq!(want["wafer"], "root");
    assert_eq!(want["image"]["kind"], "directory");
}
