//! `wafer key`, `wafer approve`, `wafer verify`: keys the real openssl reads; approvals refused
//! for failing or foreign verdicts; verification passing, and refusing tampered bundles.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const POLICY: &str = "[policy]\nname = \"test site\"\nfail_on = \"medium\"\n\n[[privileged]]\nid = \"priv.allowlist\"\nseverity = \"high\"\ncheck = [\"setuid\", \"setgid\", \"capabilities\"]\nallow = []\n";

fn attestations(b: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(b.join("attestations")) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn keys_are_read_by_openssl_and_ids_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("k");
    let o = ok(wafer(&[
        "key",
        "generate",
        "bob",
        "--dir",
        s(&dir),
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = v["keyid"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64);
    let o = ok(wafer(&["key", "id", s(&dir.join("bob.pub"))]));
    assert_eq!(stdout(&o).trim(), id);
    let o = ok(wafer(&["key", "id", s(&dir.join("bob.key"))]));
    assert_eq!(stdout(&o).trim(), id);
    let text = run(Command::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-text", "-in"])
        .arg(dir.join("bob.pub")));
    assert!(text.contains("ED25519"), "{text}");
    run(Command::new("openssl")
        .args(["pkey", "-noout", "-in"])
        .arg(dir.join("bob.key")));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dir.join("bob.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // Encrypted: passphrase from the environment; openssl decrypts it with the same one.
    let o = ok(wafer_env(
        &["key", "generate", "carol", "--dir", s(&dir), "--encrypt"],
        &[("WAFER_PASSPHRASE", "correct horse")],
    ));
    assert!(stdout(&o).contains("encrypted"));
    run(Command::new("openssl")
        .args(["pkey", "-noout", "-passin", "pass:correct horse", "-in"])
        .arg(dir.join("carol.key")));
    let o = wafer_without_terminal(&["key", "id", s(&dir.join("carol.key"))]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("WAFER_PASSPHRASE"), "{}", stderr(&o));
    let o = wafer_env(
        &["key", "id", s(&dir.join("carol.key"))],
        &[("WAFER_PASSPHRASE", "wrong")],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("carol.key"), "{}", stderr(&o));

    // Never overwrites.
    let o = wafer(&["key", "generate", "bob", "--dir", s(&dir)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    let o = wafer(&["key", "generate", "../evil", "--dir", s(&dir)]);
    assert!(!o.status.success());
}

#[test]
fn approve_refuses_failing_and_foreign_verdicts() {
    let f = Fixture::new(|r| put(r, "usr/bin/evil", &fake_elf()));
    let (_store, alice, _admin) = trust_store(&f);
    let policy = f.path("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let bad = f.build(
        &f.recipe_named(
            "bad.toml",
            "cms-squid",
            "1.0",
            "[[step]]\ntype = \"chmod\"\npaths = [\"/usr/bin/evil\"]\nmode = \"4755\"\n",
        ),
        "bad",
    );
    let o = wafer(&[
        "approve",
        s(&bad),
        "--key",
        s(&alice),
        "--policy",
        s(&policy),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("fails policy") && stderr(&o).contains("not approved"),
        "{}",
        stderr(&o)
    );
    assert!(attestations(&bad).is_empty());

    // A passing verdict, but for another wafer.
    let other = f.build(
        &f.recipe_named("other.toml", "cms-other", "1.0", ""),
        "other",
    );
    let verdict = f.path("other-verdict.json");
    let o = wafer(&[
        "vet",
        s(&other),
        "--policy",
        s(&policy),
        "--report",
        s(&verdict),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let good = f.build(&f.recipe_named("good.toml", "cms-squid", "1.1", ""), "good");
    let o = wafer(&[
        "approve",
        s(&good),
        "--key",
        s(&alice),
        "--policy",
        s(&policy),
        "--report",
        s(&verdict),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is for wafer cms-other"),
        "{}",
        stderr(&o)
    );
    assert!(attestations(&good).is_empty());

    // The failing verdict of this very wafer, passed as a report.
    let bad_verdict = f.path("bad-verdict.json");
    let o = wafer(&[
        "vet",
        s(&bad),
        "--policy",
        s(&policy),
        "--report",
        s(&bad_verdict),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let o = wafer(&[
        "approve",
        s(&bad),
        "--key",
        s(&alice),
        "--policy",
        s(&policy),
        "--report",
        s(&bad_verdict),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("only a passing wafer is approved"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn approve_then_verify_passes_and_tampering_is_refused() {
    let f = Fixture::new(|_| {});
    let (store, alice, admin) = trust_store(&f);
    let policy = f.path("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let recipe = f.recipe("");
    let b = f.path("bundle");
    ok(wafer(&[
        "build",
        s(&recipe),
        "-o",
        s(&b),
        "--sign",
        s(&admin),
    ]));

    // Unapproved: refused for lack of reviewer signatures.
    let o = wafer(&["verify", s(&b), "--trust", s(&store)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("RESULT: FAILED"), "{}", stdout(&o));

    let o = ok(wafer(&[
        "approve",
        s(&b),
        "--key",
        s(&alice),
        "--policy",
        s(&policy),
        "--expires",
        "30d",
    ]));
    assert!(
        stdout(&o).contains("approved cms-squid 1.0"),
        "{}",
        stdout(&o)
    );
    let o = ok(wafer(&["verify", s(&b), "--trust", s(&store), "--sha256"]));
    let text = stdout(&o);
    assert!(
        text.contains("RESULT: PASSED") && text.contains("PASS attestation provenance.json"),
        "{text}"
    );
    let o = ok(wafer(&["verify", s(&b), "--trust", s(&store), "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["passed"], true);
    assert!(v["checks"].as_array().unwrap().len() >= 3);

    // One flipped bit in the compressed image.
    let t = f.path("tampered");
    copy_dir(&b, &t);
    let zst = t.join("disk.img.zst");
    let mut bytes = std::fs::read(&zst).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&zst, bytes).unwrap();
    let o = wafer(&["verify", s(&t), "--trust", s(&store)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("FAIL") && stderr(&o).contains("tampered"),
        "{}\n{}",
        stdout(&o),
        stderr(&o)
    );

    // A changed manifest.
    let t2 = f.path("tampered2");
    copy_dir(&b, &t2);
    let m = std::fs::read_to_string(t2.join("wafer.json"))
        .unwrap()
        .replace("\"1.0\"", "\"9.0\"");
    std::fs::write(t2.join("wafer.json"), m).unwrap();
    let o = wafer(&["verify", s(&t2), "--trust", s(&store)]);
    assert_eq!(o.status.code(), Some(1));

    // A store that cannot be read.
    let o = wafer(&["verify", s(&b), "--trust", s(&f.path("no-store"))]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no-store"), "{}", stderr(&o));
}
