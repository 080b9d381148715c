//! [`vetter::vet::vet`], the library entry point behind `wafer vet`, on small images: the verdicts
//! `tests/cli_vet.rs` expects of the command for the same image and policy (a planted setuid
//! binary fails `priv.allowlist`; `--fail-on critical` lets it pass; `--since` the same image
//! marks it known; `--name`/`--vo` override the manifest's), the image facts and wafer version of
//! a bundle, a damaged source giving "could not vet", and a swapped compressed disk refused.
//! The root crate's `tests/vet_library.rs` compares this entry point with the `wafer` binary's
//! JSON on a built bundle.

mod common;
use common::*;

use rootfs::Tree;
use sha2::Digest;
use vetter::policy::{Outcome, Policy, Severity};
use vetter::vet::{vet, VetError, VetImage, VetInput};

/// The policy of `tests/cli_vet.rs`.
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

/// 2026-06-01T00:00:00Z.
const NOW: i64 = 1_780_272_000;

fn policy() -> Policy {
    Policy::parse(POLICY, "policy.toml", None).unwrap()
}

/// A Red Hat style base; with `evil`, a setuid `/usr/bin/evil` planted.
fn tree(evil: bool) -> Tree {
    let mut t = Tree::new(meta(0o755));
    base(&mut t);
    if evil {
        file_mode(
            &mut t,
            "/usr/bin/evil",
            b"#!/bin/sh\nexec /bin/sh\n",
            0o4755,
        );
    }
    t
}

/// A complete `wafer.json` (strict parsing) for wafer `cms-squid` 1.0 of VO cms whose
/// `compressed.sha256` is `compressed`.
fn manifest(compressed: &str) -> (bundle::Manifest, String) {
    let j = serde_json::json!({
        "format": "wafer-bundle/1",
        "name": "cms-squid", "version": "1.0", "vo": "cms",
        "os": {"id": "scientific", "version": "5", "name": "SL5"}, "arch": "x86_64",
        "filesystem": {"type": "ext3", "profile": "el5", "size": 4096},
        "requirements": {"memory_mib": 512, "vcpus": 1, "disk_mib": 2, "arch": "x86_64", "guest_types": ["pv"], "min_xen": null},
        "boot": null,
        "image": {"sha256": "66".repeat(32), "size": 4096, "verity": {"root": "77".repeat(32), "salt": "88".repeat(32), "hash_algorithm": "sha256", "hash_block_size": 4096, "data_block_size": 4096, "format": 1}},
        "compressed": {"file": "disk.img.zst", "sha256": compressed, "size": 10, "frame_size": 4096, "level": 3, "frames": 1},
        "recipe": {"sha256": "33".repeat(32), "inputs_sha256": "55".repeat(32)},
        "base": {"kind": "tar", "sha256": "44".repeat(32)},
        "packages": null,
        "source_date_epoch": 0
    });
    let bytes = serde_json::to_vec_pretty(&j).unwrap();
    (
        bundle::Manifest::from_json(&bytes).unwrap(),
        hex::encode(sha2::Sha256::digest(&bytes)),
    )
}

fn plain<'a>(t: &'a Tree, kind: &'a str) -> VetImage<'a> {
    VetImage {
        tree: t,
        kind,
        source: "/images/squid.img",
        damage: &[],
        manifest: None,
        manifest_sha256: None,
        disk: None,
    }
}

fn input<'a>(image: VetImage<'a>, policy: &'a Policy) -> VetInput<'a> {
    VetInput {
        image,
        policy,
        since: None,
        name: None,
        vo: None,
        fallback_name: "squid.img",
        fail_on: None,
        now: NOW,
        inspect: vetter::InspectOptions::default(),
    }
}

#[test]
fn a_planted_setuid_fails_and_the_fixed_image_passes() {
    let p = policy();
    let (bad, good) = (tree(true), tree(false));

    let v = vet(&input(plain(&bad, "ext"), &p)).unwrap().verdict;
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.exit_code(), 1);
    let f: Vec<(&str, &str)> = v
        .findings
        .iter()
        .map(|f| (f.rule.as_str(), f.subject.as_str()))
        .collect();
    assert_eq!(f, [("priv.allowlist", "/usr/bin/evil")], "{:?}", v.findings);
    assert!(v.findings[0].blocking);
    assert_eq!(v.findings[0].severity, Severity::High);
    // Not a bundle: the name is the fallback, no VO, no version; the image facts say what it was.
    assert_eq!(v.wafer, "squid.img");
    assert_eq!(v.vo, None);
    assert_eq!(v.wafer_version, None);
    let id = v.image.as_ref().unwrap();
    assert_eq!(id.kind, "ext");
    assert_eq!(
        (&id.manifest_sha256, &id.compressed_sha256, &id.image_sha256),
        (&None, &None, &None)
    );
    // The evaluation time is the caller's.
    assert_eq!(v.evaluated_at, NOW);
    assert_eq!(v.date, "2026-06-01");

    let out = vet(&input(plain(&good, "ext"), &p)).unwrap();
    assert_eq!(
        out.verdict.outcome,
        Outcome::Pass,
        "{:?}",
        out.verdict.findings
    );
    assert!(out.verdict.findings.is_empty());
    // The inventory judged comes back with the verdict (for the HTML report).
    assert!(out.inventory.files.setuid.is_empty());

    // --fail-on critical: the high finding no longer blocks.
    let mut i = input(plain(&bad, "ext"), &p);
    i.fail_on = Some(Severity::Critical);
    let v = vet(&i).unwrap().verdict;
    assert_eq!(v.outcome, Outcome::Pass);
    assert_eq!(v.findings.len(), 1);
    assert!(!v.findings[0].blocking);
}

#[test]
fn since_marks_known_and_overrides_win_over_the_manifest() {
    let p = policy();
    let bad = tree(true);
    let (m, msha) = manifest(&"99".repeat(32));
    let image = VetImage {
        manifest: Some(&m),
        manifest_sha256: Some(&msha),
        ..plain(&bad, "bundle")
    };

    // The bundle's own name, VO and version.
    let v = vet(&input(image, &p)).unwrap().verdict;
    assert_eq!(
        (v.wafer.as_str(), v.vo.as_deref()),
        ("cms-squid", Some("cms"))
    );
    assert_eq!(v.wafer_version.as_deref(), Some("1.0"));
    let id = v.image.as_ref().unwrap();
    assert_eq!(id.kind, "bundle");
    assert_eq!(id.manifest_sha256.as_deref(), Some(msha.as_str()));
    assert_eq!(id.image_sha256, Some("66".repeat(32)));
    assert_eq!(
        id.compressed_sha256, None,
        "no disk file given, none hashed"
    );
    assert!(!v.since);

    // As `wafer vet BAD --since BAD --name other --vo atlas`: known 1, new 0.
    let mut i = input(image, &p);
    i.since = Some(plain(&bad, "ext"));
    i.name = Some("other");
    i.vo = Some("atlas");
    let v = vet(&i).unwrap().verdict;
    assert_eq!(v.outcome, Outcome::Fail);
    assert!(v.since);
    assert_eq!((v.totals.known, v.totals.new), (1, 0), "{:?}", v.totals);
    assert_eq!(v.findings[0].new, Some(false));
    assert_eq!(
        (v.wafer.as_str(), v.vo.as_deref()),
        ("other", Some("atlas"))
    );

    // Against the fixed image the finding is new.
    let good = tree(false);
    let mut i = input(image, &p);
    i.since = Some(plain(&good, "ext"));
    let v = vet(&i).unwrap().verdict;
    assert_eq!((v.totals.known, v.totals.new), (0, 1), "{:?}", v.totals);
}

#[test]
fn damage_the_reader_skipped_is_could_not_vet_naming_the_source() {
    let p = policy();
    let good = tree(false);
    let damage = vec!["inode 12: checksum mismatch, skipped".to_string()];
    let image = VetImage {
        damage: &damage,
        ..plain(&good, "ext")
    };
    let v = vet(&input(image, &p)).unwrap().verdict;
    assert_eq!(v.outcome, Outcome::CouldNotVet);
    assert_eq!(v.exit_code(), 2);
    let u: Vec<(&str, &str, bool)> = v
        .unvetted
        .iter()
        .map(|u| (u.path.as_str(), u.reason.as_str(), u.waived))
        .collect();
    assert_eq!(
        u,
        [(
            "/images/squid.img",
            "inode 12: checksum mismatch, skipped",
            false
        )]
    );
}

#[test]
fn the_compressed_disk_is_hashed_and_a_swapped_one_refused() {
    let p = policy();
    let good = tree(false);
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img.zst");
    std::fs::write(&disk, b"the compressed disk").unwrap();
    // The oracle: sha256sum(1)'s digest of the file.
    let out = std::process::Command::new("sha256sum")
        .arg(&disk)
        .output()
        .expect("sha256sum (Debian package coreutils) is needed for this test");
    let want = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();

    let (m, msha) = manifest(&want);
    let image = VetImage {
        manifest: Some(&m),
        manifest_sha256: Some(&msha),
        disk: Some(&disk),
        ..plain(&good, "bundle")
    };
    let v = vet(&input(image, &p)).unwrap().verdict;
    assert_eq!(v.outcome, Outcome::Pass);
    assert_eq!(
        v.image.as_ref().unwrap().compressed_sha256.as_deref(),
        Some(want.as_str())
    );

    // The manifest records another disk: refused, naming the file and both digests.
    let (m2, msha2) = manifest(&"ab".repeat(32));
    let image = VetImage {
        manifest: Some(&m2),
        manifest_sha256: Some(&msha2),
        ..image
    };
    let e = vet(&input(image, &p)).unwrap_err();
    assert!(matches!(e, VetError::DiskMismatch { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&disk.display().to_string())
            && text.contains(&want)
            && text.contains(&"ab".repeat(32)),
        "{text}"
    );

    // A disk that cannot be read: an error naming it, not a verdict.
    let gone = dir.path().join("gone.zst");
    let image = VetImage {
        disk: Some(&gone),
        ..image
    };
    let e = vet(&input(image, &p)).unwrap_err();
    assert!(matches!(e, VetError::HashDisk { .. }), "{e}");
    assert!(e.to_string().contains("gone.zst"), "{e}");
}

#[test]
fn an_image_without_a_root_directory_is_an_error_naming_its_source() {
    let p = policy();
    let mut t = Tree::new(meta(0o755));
    // A tree whose root is replaced by a regular file cannot be inspected.
    let root = t.root();
    t.node_mut(root).kind =
        rootfs::NodeKind::Regular(rootfs::Content::from_bytes(b"not a directory".to_vec()));
    let e = vet(&input(plain(&t, "ext"), &p)).unwrap_err();
    assert!(matches!(e, VetError::Inspect { .. }), "{e}");
    assert!(e.to_string().contains("/images/squid.img"), "{e}");
}
