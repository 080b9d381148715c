#![no_main]
//! What a registry or an OCI layout hands a pull, and what a user or a registry's header gives:
//! image manifests and indexes (`oci::artifact`, then the wafer and attestation checks on what
//! parsed), references (`oci::Reference::parse`) and `WWW-Authenticate` challenges
//! (`oci::auth::parse_challenge`). Never a panic; whatever a check accepts is self-consistent.
use libfuzzer_sys::fuzz_target;
use oci::artifact::{check_attestation, check_wafer, ImageIndex, ImageManifest};

const SUBJECT: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(r) = oci::Reference::parse(s) {
            // A parsed reference prints back to one that parses to the same.
            let again = oci::Reference::parse(&r.to_string());
            assert!(again.is_ok(), "{r} does not parse again");
        }
        let _ = oci::auth::parse_challenge(s);
    }
    if let Ok(m) = ImageManifest::parse("fuzz manifest", data) {
        let _ = check_wafer("fuzz manifest", &m);
        let _ = check_attestation("fuzz manifest", &m, SUBJECT);
    }
    let _ = ImageIndex::parse("fuzz index", data);
});
