//! `trust::approve` as a library user calls it (what `wafer approve` does, without the command):
//! the approval it writes makes `trust::verify_dir` pass, and each refusal leaves the bundle
//! without an approval.

use std::path::Path;

use sha2::Digest;
use trust::approve::{approve, ApproveError, ApproveInput, Candidate, Judged, Verdict};
use trust::digest::{digest_reader, DigestOptions};
use trust::key::PrivateKey;
use trust::store::TrustStore;

const NOW: i64 = 1_750_000_000;
const DAY: i64 = 86_400;

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// A bundle of a 1.2 MB image in `dir/bundle`, and a store in `dir/store` whose one reviewer is
/// `reviewer`.
fn fixture(dir: &Path, reviewer: &PrivateKey) -> (std::path::PathBuf, TrustStore) {
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let raw: Vec<u8> = (0..300 * 4096u32)
        .map(|i| if i % 4096 < 100 { (i / 4096) as u8 } else { 0 })
        .collect();
    let mut z = Vec::new();
    rootfs::zseek::compress(&raw[..], &mut z, 64 * 4096, 3, 2).unwrap();
    std::fs::write(bundle.join("disk.img.zst"), &z).unwrap();
    let salt = [7u8; 32];
    let d = digest_reader(
        &raw[..],
        &DigestOptions {
            salt: salt.to_vec(),
            sha256: true,
            ..Default::default()
        },
    )
    .unwrap();
    let manifest = serde_json::json!({
        "format": "wafer-bundle/1",
        "name": "cms-squid", "version": "1.0", "vo": "cms",
        "os": {"id": "centos", "version": "5", "name": "CentOS 5"}, "arch": "x86_64",
        "filesystem": {"type": "ext3", "profile": "el5", "size": d.size},
        "requirements": {"memory_mib": 256, "vcpus": 1, "disk_mib": 2, "arch": "x86_64", "guest_types": ["pv"], "min_xen": null},
        "boot": null,
        "image": {"sha256": hex::encode(d.sha256.unwrap()), "size": d.size, "verity": {"root": d.verity.root_hex(), "salt": hex::encode(salt), "hash_algorithm": "sha256", "hash_block_size": 4096, "data_block_size": 4096, "format": 1}},
        "compressed": {"file": "disk.img.zst", "sha256": sha256_hex(&z), "size": z.len(), "frame_size": 64 * 4096, "level": 3, "frames": 5},
        "recipe": {"sha256": "33".repeat(32), "inputs_sha256": "55".repeat(32)},
        "base": {"kind": "tar", "sha256": "44".repeat(32)},
        "packages": null,
        "source_date_epoch": 0
    });
    std::fs::write(
        bundle.join("wafer.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    let store = dir.join("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("r.pub"), reviewer.public().to_pem().unwrap()).unwrap();
    std::fs::write(
        store.join("trust.toml"),
        "format = 1\nmax_approval_age_days = 90\n[reviewers]\nthreshold = 1\nkeys = [\"r.pub\"]\n",
    )
    .unwrap();
    (bundle, TrustStore::load(&store).unwrap())
}

/// A passing verdict about exactly the bundle's bytes.
fn verdict(bundle: &Path) -> Verdict {
    Verdict {
        label: "verdict.json".into(),
        bytes: b"{\"outcome\":\"pass\"}".to_vec(),
        outcome: "pass".into(),
        wafer: Some("cms-squid".into()),
        vo: Some("cms".into()),
        policy_sha256: Some("aa".repeat(32)),
        judged: Some(Judged {
            kind: "wafer".into(),
            manifest_sha256: Some(sha256_hex(
                &std::fs::read(bundle.join("wafer.json")).unwrap(),
            )),
            compressed_sha256: Some(sha256_hex(
                &std::fs::read(bundle.join("disk.img.zst")).unwrap(),
            )),
        }),
    }
}

fn input(key: &PrivateKey) -> ApproveInput<'_> {
    ApproveInput {
        key,
        policy: "policy.toml".into(),
        policy_sha256: "aa".repeat(32),
        policy_uri: "wafer:policy:test".into(),
        verifier_id: None,
        now: NOW,
        valid_for: 30 * DAY,
        threads: 0,
    }
}

fn approvals(bundle: &Path) -> usize {
    std::fs::read_dir(bundle.join("attestations")).map_or(0, |d| d.count())
}

#[test]
fn the_library_approval_makes_verification_pass() {
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::from_seed(&[1; 32]);
    let (bundle, store) = fixture(dir.path(), &key);
    // Without an approval, verification refuses the bundle at the threshold.
    let r = trust::verify_dir(&bundle, &store, NOW + DAY, &Default::default()).unwrap_err();
    assert!(
        r.failures().iter().any(|c| c.name == "reviewer threshold"),
        "{r}"
    );

    let done = approve(&bundle, &verdict(&bundle), &input(&key)).unwrap();
    let kid = key.public().keyid();
    assert_eq!(done.keyid, kid);
    assert_eq!(done.expires, NOW + 30 * DAY);
    assert_eq!(
        done.path,
        bundle.join(format!("attestations/approval-{}.json", &kid[..16]))
    );
    assert_eq!(done.manifest.name, "cms-squid");

    let v = trust::verify_dir(&bundle, &store, NOW + DAY, &Default::default())
        .unwrap_or_else(|r| panic!("{r}"));
    let report = v.report().to_string();
    assert!(
        report.contains(&format!(
            "PASS attestation approval-{}.json: approval: PASSED",
            &kid[..16]
        )),
        "{report}"
    );
    assert!(report.ends_with("RESULT: PASSED\n"), "{report}");
    // The approval records the verdict's sha256 and the policy's.
    let env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&done.path).unwrap()).unwrap();
    let payload = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        env["payload"].as_str().unwrap(),
    )
    .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let ext = &st["predicate"]["https://wafer.example/attestation/approval/v1"];
    assert_eq!(
        ext["reportDigest"]["sha256"],
        sha256_hex(b"{\"outcome\":\"pass\"}")
    );
    assert_eq!(
        st["predicate"]["policy"]["digest"]["sha256"],
        "aa".repeat(32)
    );
    assert_eq!(
        st["predicate"]["verifier"]["id"],
        format!("wafer:reviewer:{kid}")
    );
}

#[test]
fn refusals_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::from_seed(&[1; 32]);
    let (bundle, _) = fixture(dir.path(), &key);

    // A failing verdict.
    let failing = Verdict {
        outcome: "fail".into(),
        ..verdict(&bundle)
    };
    let e = approve(&bundle, &failing, &input(&key)).unwrap_err();
    assert!(matches!(e, ApproveError::NotPassing { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "verdict.json: the verdict is \"fail\"; only a passing wafer is approved"
    );

    // A verdict made with another policy.
    let mut other_policy = verdict(&bundle);
    other_policy.policy_sha256 = Some("bb".repeat(32));
    let e = approve(&bundle, &other_policy, &input(&key)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "verdict.json: the verdict was made with policy digest {}, not policy.toml's {}",
            "bb".repeat(32),
            "aa".repeat(32)
        )
    );

    // A verdict about another wafer.json.
    let mut stale = verdict(&bundle);
    stale.judged.as_mut().unwrap().manifest_sha256 = Some("00".repeat(32));
    let e = approve(&bundle, &stale, &input(&key)).unwrap_err();
    assert!(e.is_stale_verdict(), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "verdict.json: the verdict judged a wafer.json with sha256 {}",
            "00".repeat(32)
        )) && msg.ends_with("it is about other bytes"),
        "{msg}"
    );

    // A verdict that does not say which bytes it judged.
    let unbound = Verdict {
        judged: None,
        ..verdict(&bundle)
    };
    let e = approve(&bundle, &unbound, &input(&key)).unwrap_err();
    assert!(matches!(e, ApproveError::Unbound { .. }), "{e:?}");
    assert_eq!(approvals(&bundle), 0, "a refusal wrote an approval");

    // A damaged image: refused when the bundle is opened, before any verdict is looked at.
    let zst = bundle.join("disk.img.zst");
    let z = std::fs::read(&zst).unwrap();
    std::fs::write(&zst, &z[..z.len() - 1]).unwrap();
    let e = Candidate::open(&bundle)
        .err()
        .expect("a truncated image is refused");
    assert!(matches!(e, ApproveError::Damaged { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}: the bundle is damaged: ", bundle.display())),
        "{e}"
    );
    assert_eq!(approvals(&bundle), 0, "a refusal wrote an approval");
}
