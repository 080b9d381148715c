//! `wafer push` / `wafer pull` / `wafer approve --push` against a real registry (Debian's
//! docker-registry, distribution 2.8, which has no referrers API: the tag schema is used) and an
//! OCI image layout, with skopeo as the oracle that other tools read and mirror the artifact.
//! Tampering inside the registry's storage is refused before anything gets the final name.
//!
//! Debian packages: docker-registry, skopeo.

mod oci_registry;

use std::path::Path;
use std::process::{Command, Output};

use oci_registry::{copy_bundle, demo, nothing_written, tree_digest, Registry};
use serde_json::Value;

fn wafer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args(args)
        .env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
        .env("HOME", "/nonexistent")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("DOCKER_CONFIG")
        .output()
        .expect("run wafer")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "wafer failed: {}", text(&o));
    o
}

fn fails(o: Output) -> String {
    assert_eq!(o.status.code(), Some(1), "expected exit 1: {}", text(&o));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run skopeo ({e}): install the Debian package skopeo"));
    assert!(out.status.success(), "skopeo {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn push(bundle: &Path, r: &str, reg: &Registry) -> Vec<Value> {
    let o = ok(wafer(&[
        "push",
        s(bundle),
        r,
        "--insecure",
        &reg.host,
        "--json",
    ]));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn push_pull_is_byte_identical_and_skopeo_reads_and_mirrors_it() {
    let reg = Registry::start();
    let d = demo();
    let fixed = d.join("wafers/squid-fixed");
    let trust = d.join("trust");
    let r = reg.repo("cms/frontier-squid:2.6.21-2");
    let events = push(&fixed, &r, &reg);
    // One JSON object per line: blobs started and done, manifests, then the result.
    let done: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "blob-done")
        .map(|e| e["what"].as_str().unwrap())
        .collect();
    assert!(
        done.contains(&"disk.img.zst") && done.contains(&"wafer.json"),
        "{events:?}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["event"], "pushed");
    assert_eq!(
        last["referrers"], "tag schema",
        "distribution 2.8 has no referrers API"
    );
    let digest = last["digest"].as_str().unwrap().to_string();

    // Pushing again sends no blob (the registry has them all).
    let again = push(&fixed, &r, &reg);
    assert!(again
        .iter()
        .filter(|e| e["event"] == "blob-done")
        .all(|e| e["skipped"] == true));

    // Pull with the site's trust store: the same bytes the builder wrote, verified.
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("squid");
    ok(wafer(&[
        "pull",
        &r,
        "-o",
        s(&dest),
        "--insecure",
        &reg.host,
        "--trust",
        s(&trust),
    ]));
    assert_eq!(
        tree_digest(&dest),
        tree_digest(&fixed),
        "pulled bundle differs"
    );
    ok(wafer(&["verify", s(&dest), "--trust", s(&trust)]));
    // By digest too.
    let dest2 = out.path().join("by-digest");
    ok(wafer(&[
        "pull",
        &format!("{}@{digest}", reg.repo("cms/frontier-squid")),
        "-o",
        s(&dest2),
        "--insecure",
        &reg.host,
    ]));
    assert_eq!(tree_digest(&dest2), tree_digest(&fixed));
    // An existing bundle is not replaced without --force.
    let e = fails(wafer(&[
        "pull",
        &r,
        "-o",
        s(&dest),
        "--insecure",
        &reg.host,
    ]));
    assert!(e.contains("--force"), "{e}");
    ok(wafer(&[
        "pull",
        &r,
        "-o",
        s(&dest),
        "--insecure",
        &reg.host,
        "--force",
    ]));

    // skopeo reads our manifest as the registry serves it.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{r}"),
    ]);
    let m: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(m["artifactType"], "application/vnd.wafer.bundle.v1");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.wafer.manifest.v1+json"
    );
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.wafer.disk.v1.zstd"
    );
    assert_eq!(
        m["annotations"]["org.opencontainers.image.version"],
        "2.6.21-2"
    );

    // skopeo mirrors it: registry -> oci: layout -> another repository; wafer pulls both copies.
    let lay = out.path().join("layout");
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{r}"),
        &format!("oci:{}:mirrored", s(&lay)),
    ]);
    let from_layout = out.path().join("from-layout");
    ok(wafer(&[
        "pull",
        &format!("oci:{}:mirrored", s(&lay)),
        "-o",
        s(&from_layout),
    ]));
    let mirror = reg.repo("mirror/squid:copy");
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:mirrored", s(&lay)),
        &format!("docker://{mirror}"),
    ]);
    let from_mirror = out.path().join("from-mirror");
    let o = ok(wafer(&[
        "pull",
        &mirror,
        "-o",
        s(&from_mirror),
        "--insecure",
        &reg.host,
        "--json",
    ]));
    let res: Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(
        res["digest"].as_str(),
        Some(digest.as_str()),
        "skopeo kept the manifest's bytes"
    );
    assert!(
        o.stderr.is_empty(),
        "no progress bars when stderr is not a terminal: {}",
        text(&o)
    );
    // skopeo copies the wafer, not its referrers: the same bundle without attestations.
    for copy in [&from_layout, &from_mirror] {
        let mut want = tree_digest(&fixed);
        want.retain(|(p, _)| !p.starts_with("attestations/"));
        assert_eq!(tree_digest(copy), want);
    }
}

#[test]
fn oci_layout_round_trip() {
    let d = demo();
    let fixed = d.join("wafers/squid-fixed");
    let out = tempfile::tempdir().unwrap();
    let lay = out.path().join("wafers");
    let o = ok(wafer(&["push", s(&fixed), &format!("oci:{}", s(&lay))]));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(":2.6.21-2"),
        "tagged with the version"
    );
    let dest = out.path().join("pulled");
    ok(wafer(&[
        "pull",
        &format!("oci:{}:2.6.21-2", s(&lay)),
        "-o",
        s(&dest),
        "--trust",
        s(&d.join("trust")),
    ]));
    assert_eq!(tree_digest(&dest), tree_digest(&fixed));
    // skopeo reads the layout.
    let raw = skopeo(&["inspect", "--raw", &format!("oci:{}:2.6.21-2", s(&lay))]);
    assert!(raw.contains("application/vnd.wafer.bundle.v1"), "{raw}");
    // A tag that is not there.
    let e = fails(wafer(&[
        "pull",
        &format!("oci:{}:nope", s(&lay)),
        "-o",
        s(&out.path().join("x")),
    ]));
    assert!(e.contains("not found"), "{e}");
    assert!(nothing_written(out.path(), "x"));
}

#[test]
fn approve_push_attaches_an_approval_a_fresh_pull_verifies() {
    let reg = Registry::start();
    let d = demo();
    let trust = d.join("trust");
    let work = tempfile::tempdir().unwrap();
    let unapproved = work.path().join("unapproved");
    copy_bundle(&d.join("wafers/squid-fixed"), &unapproved);
    for e in std::fs::read_dir(unapproved.join("attestations")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let r = reg.repo("cms/squid:1");
    push(&unapproved, &r, &reg);
    // Without an approval the site refuses it, and nothing appears under the name.
    let dest = work.path().join("site-copy");
    let e = fails(wafer(&[
        "pull",
        &r,
        "-o",
        s(&dest),
        "--insecure",
        &reg.host,
        "--trust",
        s(&trust),
    ]));
    assert!(e.contains("reviewer threshold"), "{e}");
    assert!(nothing_written(work.path(), "site-copy"));

    // The reviewer approves it in the registry, on the verdict of an earlier vetting.
    let o = ok(wafer(&[
        "approve",
        "--push",
        &r,
        "--insecure",
        &reg.host,
        "--key",
        s(&d.join("keys/demo-reviewer.key")),
        "--policy",
        s(&d.join("recipe/demo-policy.toml")),
        "--report",
        s(&d.join("reports/vet-fixed.json")),
    ]));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("attached approval-"),
        "{}",
        text(&o)
    );
    let o = ok(wafer(&[
        "pull",
        &r,
        "-o",
        s(&dest),
        "--insecure",
        &reg.host,
        "--trust",
        s(&trust),
        "--json",
    ]));
    let res: Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(res["verified"], true);
    assert_eq!(res["attestations"].as_array().unwrap().len(), 1);
    ok(wafer(&["verify", s(&dest), "--trust", s(&trust)]));

    // A verdict about another wafer is refused (squid-planted's verdict fails anyway).
    let e = fails(wafer(&[
        "approve",
        "--push",
        &r,
        "--insecure",
        &reg.host,
        "--key",
        s(&d.join("keys/demo-reviewer.key")),
        "--policy",
        s(&d.join("recipe/demo-policy.toml")),
        "--report",
        s(&d.join("reports/vet-planted.json")),
    ]));
    assert!(
        e.contains("not approved") || e.contains("inconsistent"),
        "{e}"
    );
}

#[test]
fn a_dropped_referrer_makes_verify_fail_not_the_pull() {
    let reg = Registry::start();
    let d = demo();
    let trust = d.join("trust");
    let r = reg.repo("cms/squid:1");
    let events = push(&d.join("wafers/squid-fixed"), &r, &reg);
    let referrer = events
        .iter()
        .find(|e| {
            e["event"] == "manifest" && e["what"].as_str().unwrap().starts_with("attestations/")
        })
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    // The registry loses the referrer manifest (its tag-schema index still lists it).
    let (status, _) = reg.request(
        "DELETE",
        &format!("/v2/cms/squid/manifests/{referrer}"),
        &[],
        b"",
    );
    assert_eq!(status, 202);
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("pulled");
    let o = ok(wafer(&[
        "pull",
        &r,
        "-o",
        s(&dest),
        "--insecure",
        &reg.host,
    ]));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not in the store"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_dir(dest.join("attestations"))
            .unwrap()
            .count(),
        0
    );
    let e = fails(wafer(&["verify", s(&dest), "--trust", s(&trust)]));
    assert!(e.contains("reviewer threshold"), "{e}");
    // With the trust store the pull itself refuses.
    let e = fails(wafer(&[
        "pull",
        &r,
        "-o",
        s(&work.path().join("x")),
        "--insecure",
        &reg.host,
        "--trust",
        s(&trust),
    ]));
    assert!(e.contains("reviewer threshold"), "{e}");
    assert!(nothing_written(work.path(), "x"));
}

#[test]
fn a_disk_blob_replaced_in_the_registry_storage_is_refused() {
    let reg = Registry::start();
    let d = demo();
    let fixed = d.join("wafers/squid-fixed");
    let r = reg.repo("cms/squid:1");
    let events = push(&fixed, &r, &reg);
    let disk = events
        .iter()
        .find(|e| e["event"] == "blob-done" && e["what"] == "disk.img.zst")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    // Same length, one byte changed in the middle.
    let data = reg.blob_data(&disk);
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&data, &bytes).unwrap();
    let work = tempfile::tempdir().unwrap();
    for trust in [None, Some(d.join("trust"))] {
        let dest = work.path().join("pulled");
        let mut args = vec!["pull", &r, "-o", s(&dest), "--insecure", &reg.host];
        if let Some(t) = &trust {
            args.extend(["--trust", s(t)]);
        }
        let e = fails(wafer(&args));
        assert!(e.contains("disk.img.zst") && e.contains("digest"), "{e}");
        assert!(
            nothing_written(work.path(), "pulled"),
            "nothing under the final name"
        );
    }
}

#[test]
fn a_manifest_pointing_at_another_wafers_disk_is_refused() {
    let reg = Registry::start();
    let d = demo();
    let fixed_ev = push(
        &d.join("wafers/squid-fixed"),
        &reg.repo("cms/squid:fixed"),
        &reg,
    );
    push(
        &d.join("wafers/squid-planted"),
        &reg.repo("cms/squid:planted"),
        &reg,
    );
    let _ = fixed_ev;
    // The fixed wafer's manifest (and approval), with the planted wafer's disk layer.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}", reg.repo("cms/squid:fixed")),
    ]);
    let planted = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}", reg.repo("cms/squid:planted")),
    ]);
    let mut m: Value = serde_json::from_str(&raw).unwrap();
    let p: Value = serde_json::from_str(&planted).unwrap();
    m["layers"][0] = p["layers"][0].clone();
    let body = serde_json::to_vec(&m).unwrap();
    let (status, b) = reg.request(
        "PUT",
        "/v2/cms/squid/manifests/evil",
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        &body,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&b));
    let work = tempfile::tempdir().unwrap();
    let e = fails(wafer(&[
        "pull",
        &reg.repo("cms/squid:evil"),
        "-o",
        s(&work.path().join("pulled")),
        "--insecure",
        &reg.host,
    ]));
    assert!(e.contains("another disk"), "{e}");
    assert!(nothing_written(work.path(), "pulled"));

    // A layer of a media type wafer does not know is refused too.
    let mut m2: Value = serde_json::from_str(&raw).unwrap();
    m2["layers"][1]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip".into();
    let (status, _) = reg.request(
        "PUT",
        "/v2/cms/squid/manifests/odd",
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        &serde_json::to_vec(&m2).unwrap(),
    );
    assert_eq!(status, 201);
    let e = fails(wafer(&[
        "pull",
        &reg.repo("cms/squid:odd"),
        "-o",
        s(&work.path().join("pulled")),
        "--insecure",
        &reg.host,
    ]));
    assert!(e.contains("unknown mediaType"), "{e}");
    assert!(nothing_written(work.path(), "pulled"));
}

#[test]
fn a_referrer_signed_by_an_unknown_key_is_refused_with_a_trust_store() {
    let reg = Registry::start();
    let d = demo();
    let work = tempfile::tempdir().unwrap();
    // An outsider (not in the site's trust store) approves the wafer too.
    ok(wafer(&[
        "key",
        "generate",
        "mallory",
        "--dir",
        s(work.path()),
    ]));
    let bundle = work.path().join("bundle");
    copy_bundle(&d.join("wafers/squid-fixed"), &bundle);
    ok(wafer(&[
        "approve",
        s(&bundle),
        "--key",
        s(&work.path().join("mallory.key")),
        "--policy",
        s(&d.join("recipe/demo-policy.toml")),
        "--report",
        s(&d.join("reports/vet-fixed.json")),
    ]));
    assert_eq!(
        std::fs::read_dir(bundle.join("attestations"))
            .unwrap()
            .count(),
        2
    );
    let r = reg.repo("cms/squid:1");
    push(&bundle, &r, &reg);
    // Fail closed: the site's pull refuses, nothing under the name.
    let e = fails(wafer(&[
        "pull",
        &r,
        "-o",
        s(&work.path().join("pulled")),
        "--insecure",
        &reg.host,
        "--trust",
        s(&d.join("trust")),
    ]));
    assert!(e.contains("unknown key"), "{e}");
    assert!(nothing_written(work.path(), "pulled"));
    // Without a trust store the bytes are pulled as they are (verify decides later).
    ok(wafer(&[
        "pull",
        &r,
        "-o",
        s(&work.path().join("pulled")),
        "--insecure",
        &reg.host,
    ]));
    assert_eq!(
        tree_digest(&work.path().join("pulled")),
        tree_digest(&bundle)
    );
}

#[test]
fn references_and_plain_http_are_checked() {
    let reg = Registry::start();
    let d = demo();
    let work = tempfile::tempdir().unwrap();
    for bad in [
        "squid",
        "host/UPPER:1",
        "host/x:bad tag",
        "host/x@sha256:12",
    ] {
        let o = wafer(&["pull", bad, "-o", s(&work.path().join("x"))]);
        assert_eq!(o.status.code(), Some(1), "{bad}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("not a reference"),
            "{}",
            text(&o)
        );
    }
    // A registry over plain HTTP is refused unless named with --insecure.
    let e = fails(wafer(&[
        "push",
        s(&d.join("wafers/squid-fixed")),
        &reg.repo("cms/squid:1"),
    ]));
    assert!(e.contains(&reg.host), "{e}");
    // A pull without a tag or digest says what to name.
    let e = fails(wafer(&[
        "pull",
        &reg.repo("cms/squid"),
        "-o",
        s(&work.path().join("x")),
        "--insecure",
        &reg.host,
    ]));
    assert!(e.contains("tag or a digest"), "{e}");
}
