//! `trust::provenance::sign_bundle`: the VO administrator's build record for a bundle folder,
//! signed over the bundle's digests and written without following links.

use base64::Engine;
use sha2::Digest;
use trust::key::PrivateKey;
use trust::provenance::{sign_bundle, ProvenanceError};
use trust::statement::{default_builder_id, PROVENANCE_V1};

fn manifest() -> Vec<u8> {
    serde_json::to_vec_pretty(&serde_json::json!({
        "format": "wafer-bundle/1",
        "name": "cms-squid", "version": "1.0", "vo": "cms",
        "os": {"id": "centos", "version": "5", "name": "CentOS 5"}, "arch": "x86_64",
        "filesystem": {"type": "ext3", "profile": "el5", "size": 4096},
        "requirements": {"memory_mib": 256, "vcpus": 1, "disk_mib": 1, "arch": "x86_64", "guest_types": ["pv"], "min_xen": null},
        "boot": null,
        "image": {"sha256": "11".repeat(32), "size": 4096,
                  "verity": {"root": "aa".repeat(32), "salt": "0a0b", "hash_algorithm": "sha256", "hash_block_size": 4096, "data_block_size": 4096, "format": 1}},
        "compressed": {"file": "disk.img.zst", "sha256": "22".repeat(32), "size": 100, "frame_size": 4096, "level": 3, "frames": 1},
        "recipe": {"sha256": "33".repeat(32), "inputs_sha256": "55".repeat(32)},
        "base": {"kind": "tar", "sha256": "44".repeat(32)},
        "packages": null,
        "source_date_epoch": 0
    }))
    .unwrap()
}

fn payload(env: &[u8]) -> serde_json::Value {
    let e: serde_json::Value = serde_json::from_slice(env).unwrap();
    let p = base64::engine::general_purpose::STANDARD
        .decode(e["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&p).unwrap()
}

#[test]
fn signs_the_bundles_digests_with_the_default_or_given_builder() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest();
    std::fs::write(dir.path().join("wafer.json"), &m).unwrap();
    let key = PrivateKey::generate();
    let p = sign_bundle(dir.path(), &key, None, "9.9.9").unwrap();
    assert_eq!(p, dir.path().join("attestations/provenance.json"));
    let st = payload(&std::fs::read(&p).unwrap());
    assert_eq!(st["predicateType"], PROVENANCE_V1);
    let b = &st["predicate"]["runDetails"]["builder"];
    assert_eq!(
        b["id"],
        default_builder_id("cms", &key.public().keyid()).as_str()
    );
    assert_eq!(b["version"]["wafer"], "9.9.9");
    let subjects = st["subject"].as_array().unwrap();
    let wafer_json = subjects.iter().find(|s| s["name"] == "wafer.json").unwrap();
    assert_eq!(
        wafer_json["digest"]["sha256"],
        hex::encode(sha2::Sha256::digest(&m)).as_str()
    );
    let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    assert!(deps.iter().any(|d| d["name"] == "base:tar"));

    sign_bundle(dir.path(), &key, Some("https://cms.example.org/b"), "9.9.9").unwrap();
    let st = payload(&std::fs::read(&p).unwrap());
    assert_eq!(
        st["predicate"]["runDetails"]["builder"]["id"],
        "https://cms.example.org/b"
    );
}

#[test]
fn refuses_a_broken_manifest_and_a_linked_attestations_folder() {
    let key = PrivateKey::generate();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wafer.json"), b"{\"format\": \"other\"}").unwrap();
    let e = sign_bundle(dir.path(), &key, None, "1").unwrap_err();
    assert!(matches!(e, ProvenanceError::Manifest { .. }), "{e:?}");
    assert!(e.to_string().contains("wafer.json"), "{e}");

    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wafer.json"), manifest()).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("attestations")).unwrap();
    let e = sign_bundle(dir.path(), &key, None, "1").unwrap_err();
    assert!(matches!(e, ProvenanceError::Write { .. }), "{e:?}");
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);

    let missing = dir.path().join("nope");
    let e = sign_bundle(&missing, &key, None, "1").unwrap_err();
    assert!(matches!(e, ProvenanceError::Read { .. }), "{e:?}");
}
