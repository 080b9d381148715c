//! wafer's three statements (approval, build provenance, rollback exception) as the trust library
//! makes them, checked by sigstore-python, python in-toto-attestation and python-securesystemslib
//! (see `oracles/mod.rs`); and the old layout, which sigstore-python refuses, still read by wafer.

mod oracles;

use std::path::Path;

use bundle::Manifest;
use trust::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use trust::key::PrivateKey;
use trust::statement::{
    self, DmVerity, ResourceDescriptor, Statement, StatementError, VerityLayout,
    APPROVAL_EXTENSION, DM_VERITY_ANNOTATION, PROVENANCE_V1, VERITY_DIGEST,
};
use trust::verify::{
    approval_statement, sign_statement, wafer_subjects, ApprovalRequest, RollbackException,
    ROLLBACK_EXCEPTION_V1,
};

const ROOT: &str = "4b6a3f0c1e2d5a6978877665544332211000ffeeddccbbaa9988776655443322";

fn manifest() -> Vec<u8> {
    // A complete manifest: wafer.json is parsed strictly (bundle::Manifest).
    serde_json::to_vec(&serde_json::json!({
        "format": "wafer-bundle/1",
        "name": "cms-squid", "version": "1.0", "vo": "cms",
        "os": {"id": "centos", "version": "5", "name": "CentOS 5"}, "arch": "x86_64",
        "filesystem": {"type": "ext3", "profile": "el5", "size": 4096},
        "requirements": {"memory_mib": 256, "vcpus": 1, "disk_mib": 1, "arch": "x86_64", "guest_types": ["pv"], "min_xen": null},
        "boot": null,
        "image": {"sha256": "11".repeat(32), "size": 4096,
                  "verity": {"root": ROOT, "salt": "0a0b", "hash_algorithm": "sha256", "hash_block_size": 4096, "data_block_size": 4096, "format": 1}},
        "compressed": {"file": "disk.img.zst", "sha256": "22".repeat(32), "size": 100, "frame_size": 4096, "level": 3, "frames": 1},
        "recipe": {"sha256": "33".repeat(32), "inputs_sha256": "55".repeat(32)},
        "base": {"kind": "tar", "sha256": "44".repeat(32)},
        "packages": null,
        "source_date_epoch": 0
    }))
    .unwrap()
}

fn write_key(dir: &Path, k: &PrivateKey) -> std::path::PathBuf {
    let p = dir.join("key.pub");
    std::fs::write(&p, k.public().to_pem().unwrap()).unwrap();
    p
}

fn approval(k: &PrivateKey) -> Statement {
    let mb = manifest();
    approval_statement(&ApprovalRequest {
        manifest_bytes: &mb,
        verifier_id: statement::default_verifier_id(&k.public().keyid()),
        policy_uri: statement::default_policy_uri("test site", &"33".repeat(32)),
        policy_sha256: "33".repeat(32),
        report_sha256: "44".repeat(32),
        time: 1_700_000_000,
        expires: 1_800_000_000,
    })
    .unwrap()
}

fn provenance(k: &PrivateKey) -> Statement {
    let mb = manifest();
    let m = Manifest::from_json(&mb).unwrap();
    let prov = statement::Provenance {
        build_definition: statement::BuildDefinition {
            build_type: statement::WAFER_BUILD_TYPE.into(),
            external_parameters: serde_json::json!({"name": "cms-squid", "version": "1.0", "vo": "cms"}),
            internal_parameters: Some(serde_json::json!({"source_date_epoch": 1500000000})),
            resolved_dependencies: vec![ResourceDescriptor::new(
                "recipe",
                &[("sha256", "55".repeat(32))],
            )],
        },
        run_details: statement::RunDetails {
            builder: statement::Builder {
                id: statement::default_builder_id("cms", &k.public().keyid()),
                version: Some([("wafer".to_string(), "0.1.0".to_string())].into()),
            },
            metadata: None,
        },
    };
    Statement::new(wafer_subjects(&mb, &m), PROVENANCE_V1, &prov)
}

fn rollback_exception() -> Statement {
    Statement::new(
        vec![ResourceDescriptor::new(
            "disk.img",
            &[("sha256", "11".repeat(32))],
        )],
        ROLLBACK_EXCEPTION_V1,
        &RollbackException {
            name: "cms-squid".into(),
            version: "1.0".into(),
            reason: "1.1 breaks FroNTier clients".into(),
            expires: "2030-01-01T00:00:00Z".into(),
        },
    )
}

/// Every statement wafer signs is accepted by all three libraries, and a copy with one payload
/// byte or one signature bit changed is refused by each.
#[test]
fn wafers_statements_are_accepted_by_every_oracle_and_tampering_refused() {
    let dir = tempfile::tempdir().unwrap();
    let k = PrivateKey::generate();
    let pubf = write_key(dir.path(), &k);
    for (name, st) in [
        ("approval", approval(&k)),
        ("provenance", provenance(&k)),
        ("rollback-exception", rollback_exception()),
    ] {
        let p = dir.path().join(format!("{name}.json"));
        std::fs::write(&p, sign_statement(&st, &k)).unwrap();
        oracles::assert_accepted_and_tamper_refused(&pubf, &p, Some(&"11".repeat(32)));
    }
}

/// What the statements say: the dm-verity root is an annotation, not a digest; the extension is
/// URI-named; no digest set holds an algorithm sigstore-python does not know.
#[test]
fn layout_of_the_statements() {
    let k = PrivateKey::generate();
    for st in [approval(&k), provenance(&k)] {
        let v: serde_json::Value = serde_json::from_slice(&st.to_json()).unwrap();
        for s in v["subject"].as_array().unwrap() {
            for alg in s["digest"].as_object().unwrap().keys() {
                assert_eq!(alg, "sha256", "{s}");
            }
        }
        let img = &v["subject"][1];
        assert_eq!(img["name"], "disk.img");
        assert_eq!(img["annotations"][DM_VERITY_ANNOTATION]["rootHash"], ROOT);
        assert_eq!(img["annotations"][DM_VERITY_ANNOTATION]["salt"], "0a0b");
        let iv = st.image_verity().unwrap().unwrap();
        assert_eq!(
            (iv.root.as_str(), iv.layout),
            (ROOT, VerityLayout::Annotation)
        );
        assert!(st.legacy_layout().is_empty());
    }
    let v: serde_json::Value = serde_json::from_slice(&approval(&k).to_json()).unwrap();
    let p = &v["predicate"];
    assert!(p.get("wafer").is_none());
    assert_eq!(p[APPROVAL_EXTENSION]["vo"], "cms");
    assert!(p[APPROVAL_EXTENSION].get("verity").is_none());
    assert_eq!(
        p["verifier"]["id"],
        format!("wafer:reviewer:{}", k.public().keyid())
    );
    assert_eq!(p["policy"]["uri"], "wafer:policy:test%20site");
    let text = String::from_utf8(approval(&k).to_json()).unwrap();
    assert!(
        !text.contains("file:") && !text.contains(".invalid"),
        "{text}"
    );
    let text = String::from_utf8(provenance(&k).to_json()).unwrap();
    assert!(!text.contains(".invalid"), "{text}");
}

/// The old layout (root as a `dm-verity-sha256` digest, extension `wafer`): sigstore-python refuses
/// it, which is why it changed; the other two accept it; wafer reads it and says it is old.
#[test]
fn old_layout_is_refused_by_sigstore_and_read_by_wafer() {
    let dir = tempfile::tempdir().unwrap();
    let k = PrivateKey::generate();
    let pubf = write_key(dir.path(), &k);
    let mut v: serde_json::Value = serde_json::from_slice(&approval(&k).to_json()).unwrap();
    let ext = v["predicate"][APPROVAL_EXTENSION].take();
    v["predicate"]
        .as_object_mut()
        .unwrap()
        .remove(APPROVAL_EXTENSION);
    v["predicate"]["wafer"] = ext;
    v["predicate"]["wafer"]["verity"] = serde_json::json!({"salt": "0a0b", "hashAlgorithm": "sha256",
        "dataBlockSize": 4096, "hashBlockSize": 4096, "format": 1});
    v["subject"][1]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    v["subject"][1]["digest"][VERITY_DIGEST] = ROOT.into();
    let payload = serde_json::to_vec(&v).unwrap();
    let p = dir.path().join("old.json");
    std::fs::write(
        &p,
        Envelope::sign(INTOTO_PAYLOAD_TYPE, payload.clone(), &k).to_json(),
    )
    .unwrap();
    let e = oracles::check("sigstore", &pubf, &p, None).unwrap_err();
    assert!(e.contains("dm-verity-sha256"), "{e}");
    oracles::check("securesystemslib", &pubf, &p, None).unwrap();
    // The VSA extension `wafer` is not URI-named.
    let e = oracles::check("in-toto-attestation", &pubf, &p, None).unwrap_err();
    assert!(e.contains("'wafer'") && e.contains("not URI-named"), "{e}");

    let st = Statement::from_json(&payload).unwrap();
    let iv = st.image_verity().unwrap().unwrap();
    assert_eq!(
        (iv.root.as_str(), iv.layout, iv.params),
        (ROOT, VerityLayout::LegacyDigest, None)
    );
    assert_eq!(st.legacy_layout().len(), 2, "{:?}", st.legacy_layout());
    let vsa: statement::VerificationSummary = st.predicate_as().unwrap();
    assert_eq!(vsa.wafer.verity.unwrap().salt, "0a0b");
}

#[test]
fn dm_verity_annotation_is_checked() {
    let k = PrivateKey::generate();
    let mut st = approval(&k);
    // Both places, disagreeing.
    st.subject[1]
        .digest
        .insert(VERITY_DIGEST.into(), "ab".repeat(32));
    assert!(matches!(
        st.image_verity(),
        Err(StatementError::Subject { .. })
    ));
    // Both places, agreeing: the annotation, but the statement is still of the old layout.
    st.subject[1]
        .digest
        .insert(VERITY_DIGEST.into(), ROOT.into());
    assert_eq!(
        st.image_verity().unwrap().unwrap().layout,
        VerityLayout::Annotation
    );
    assert_eq!(st.legacy_layout().len(), 1);
    // A malformed annotation (unknown field, wrong type, uppercase root) is an error.
    for bad in [
        serde_json::json!({"rootHash": ROOT, "salt": "", "hashAlgorithm": "sha256", "dataBlockSize": 4096, "hashBlockSize": 4096, "format": 1, "x": 1}),
        serde_json::json!({"rootHash": 7}),
        serde_json::to_value(DmVerity::new(&ROOT.to_uppercase(), "00")).unwrap(),
        serde_json::json!("root"),
    ] {
        let mut st = approval(&k);
        st.subject[1].digest.remove(VERITY_DIGEST);
        st.subject[1].annotations = Some(serde_json::json!({ DM_VERITY_ANNOTATION: bad }));
        assert!(st.image_verity().is_err(), "{bad}");
    }
    // No root at all.
    let mut st = approval(&k);
    st.subject[1].annotations = None;
    assert_eq!(st.image_verity().unwrap(), None);
}

#[test]
fn uris() {
    for ok in [
        "https://grid.example.org/security",
        "wafer:reviewer:ab",
        "urn:x:y",
        "file:///etc/p",
    ] {
        assert!(statement::is_uri(ok), "{ok}");
    }
    for bad in [
        "",
        "alice",
        ":x",
        "1a:b",
        "a b:c",
        "https://x y",
        "x:",
        "a:b\n",
    ] {
        assert!(!statement::is_uri(bad), "{bad:?}");
    }
    assert_eq!(
        statement::default_policy_uri("", "ab"),
        "wafer:policy:sha256:ab"
    );
    assert_eq!(
        statement::default_builder_id("c m/s", "ab"),
        "wafer:builder:c%20m%2Fs:ab"
    );
    for s in [
        statement::default_policy_uri("ü: x", "ab"),
        statement::default_verifier_id("ab"),
    ] {
        assert!(statement::is_uri(&s), "{s}");
    }
}
