//! `wafer approve --report VERDICT.json` is bound to the bytes `wafer vet` judged: the verdict
//! records the sha256 of the bundle's wafer.json and disk.img.zst, and approve refuses a verdict
//! about other bytes (another build of the same wafer, a bundle whose disk was swapped while it
//! was vetted, or a verdict without the digests).

mod common;

use std::path::Path;

use common::*;

const POLICY: &str = "[policy]\nname = \"test site\"\nfail_on = \"medium\"\n\n[[privileged]]\nid = \"priv.allowlist\"\nseverity = \"high\"\ncheck = [\"setuid\", \"setgid\", \"capabilities\"]\nallow = []\n";

fn attestations(b: &Path) -> usize {
    std::fs::read_dir(b.join("attestations"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

fn approve(bundle: &Path, key: &Path, policy: &Path, report: &Path) -> std::process::Output {
    wafer(&[
        "approve",
        s(bundle),
        "--key",
        s(key),
        "--policy",
        s(policy),
        "--report",
        s(report),
    ])
}

fn vet(bundle: &Path, policy: &Path, report: &Path) -> serde_json::Value {
    let o = wafer(&[
        "vet",
        s(bundle),
        "--policy",
        s(policy),
        "--report",
        s(report),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap()
}

#[test]
fn approve_refuses_a_verdict_about_other_bytes() {
    let f = Fixture::new(|r| put(r, "usr/bin/tool", &fake_elf()));
    let keys = f.path("keys");
    ok(wafer(&["key", "generate", "alice", "--dir", s(&keys)]));
    let alice = keys.join("alice.key");
    let policy = f.path("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    // Two passing builds of the same wafer (name, version, VO), different disk contents.
    let one = f.build(&f.recipe_named("one.toml", "cms-squid", "1.0", ""), "one");
    let two = f.build(
        &f.recipe_named(
            "two.toml",
            "cms-squid",
            "1.0",
            "[[step]]\ntype = \"chmod\"\npaths = [\"/usr/bin/tool\"]\nmode = \"0700\"\n",
        ),
        "two",
    );
    assert_ne!(
        sha256_hex(&one.join("disk.img.zst")),
        sha256_hex(&two.join("disk.img.zst"))
    );

    // The verdict records what was read.
    let v1 = f.path("one.json");
    let j = vet(&one, &policy, &v1);
    assert_eq!(j["image"]["kind"], "bundle");
    assert_eq!(
        j["image"]["manifest_sha256"],
        sha256_hex(&one.join("wafer.json")).as_str()
    );
    assert_eq!(
        j["image"]["compressed_sha256"],
        sha256_hex(&one.join("disk.img.zst")).as_str()
    );

    // Another build's verdict: same wafer, VO and policy, other bytes.
    let o = approve(&two, &alice, &policy, &v1);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("judged a wafer.json with sha256") && e.contains("it is about other bytes"),
        "{e}"
    );
    assert!(e.contains(&sha256_hex(&two.join("wafer.json"))), "{e}");
    assert_eq!(attestations(&two), 0);

    // A bundle whose disk does not match its manifest (disk of `two`, manifest of `one`) is not
    // vetted at all: vet refuses it, naming the disk.
    let mixed = f.path("mixed");
    copy_dir(&one, &mixed);
    std::fs::copy(two.join("disk.img.zst"), mixed.join("disk.img.zst")).unwrap();
    let o = wafer(&["vet", s(&mixed), "--policy", s(&policy)]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("disk.img.zst"), "{}", stderr(&o));
    // A verdict that judged two's disk with one's manifest (as an older vet would have made)
    // cannot approve one.
    let mut mixed_v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&v1).unwrap()).unwrap();
    mixed_v["image"]["compressed_sha256"] = sha256_hex(&two.join("disk.img.zst")).into();
    let vm = f.path("mixed.json");
    std::fs::write(&vm, serde_json::to_vec_pretty(&mixed_v).unwrap()).unwrap();
    let o = approve(&one, &alice, &policy, &vm);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("judged a disk.img.zst with sha256") && e.contains("it is about other bytes"),
        "{e}"
    );
    assert_eq!(attestations(&one), 0);

    // A verdict without the digests (an older wafer's) is refused, naming the way out.
    let mut bare: serde_json::Value = serde_json::from_slice(&std::fs::read(&v1).unwrap()).unwrap();
    bare.as_object_mut().unwrap().remove("image");
    let vb = f.path("bare.json");
    std::fs::write(&vb, serde_json::to_vec_pretty(&bare).unwrap()).unwrap();
    let o = approve(&one, &alice, &policy, &vb);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("does not record which bytes it judged") && e.contains("vet this bundle again"),
        "{e}"
    );
    assert_eq!(attestations(&one), 0);

    // Its own verdict approves it.
    let o = ok(approve(&one, &alice, &policy, &v1));
    assert!(
        stdout(&o).contains("approved cms-squid 1.0"),
        "{}",
        stdout(&o)
    );
    assert_eq!(attestations(&one), 1);
    // Approving without --report vets the same bytes and passes too.
    let o = ok(wafer(&[
        "approve",
        s(&two),
        "--key",
        s(&alice),
        "--policy",
        s(&policy),
    ]));
    assert!(stdout(&o).contains("approved"), "{}", stdout(&o));
}
