#![no_main]
//! The cheap half of bundle verification on hostile input: a manifest and an attestation (as
//! given, and re-signed by a trusted reviewer so the approval checks are reached), the seek-table
//! facts, the report's escaped rendering; and the escape helper's invariant (nothing it prints
//! needs escaping).
use libfuzzer_sys::fuzz_target;
use rootfs::escape::{escape_bytes, escape_lines, needs_escape};
use trust::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use trust::key::PrivateKey;
use trust::store::{TrustConfig, TrustStore};
use trust::verify::{check_image_facts, check_streamed, verify_metadata, ImageFacts, Streamed};

fuzz_target!(|data: &[u8]| {
    let e = escape_bytes(data);
    assert!(!e.contains(needs_escape), "{e:?}");
    if let Ok(t) = std::str::from_utf8(data) {
        assert!(!escape_lines(t).contains(|c| c != '\n' && needs_escape(c)));
    }

    let key = PrivateKey::from_seed(&[7; 32]);
    let Ok(config) = TrustConfig::from_toml(
        "format = 1\n[reviewers]\nthreshold = 1\nkeys = [\"r.pub\"]\n",
        "trust.toml",
    ) else {
        return;
    };
    let store = TrustStore {
        config,
        reviewers: vec![key.public()],
        vo_admins: Vec::new(),
        exceptions: Vec::new(),
    };
    // First byte: the manifest's length in units of 8; the rest, the attestation's payload.
    let (n, rest) = data
        .split_first()
        .map_or((0, &[][..]), |(h, r)| (usize::from(*h) * 8, r));
    let (manifest, payload) = rest.split_at(n.min(rest.len()));
    let attestations = vec![
        ("given.json".to_string(), payload.to_vec()),
        (
            "signed.json".to_string(),
            Envelope::sign(INTOTO_PAYLOAD_TYPE, payload.to_vec(), &key).to_json(),
        ),
    ];
    let (mut r, m) = verify_metadata(manifest, &attestations, &store, 1_750_000_000);
    if let Some(m) = m {
        let size = data.iter().take(8).fold(0u64, |a, &b| (a << 8) | u64::from(b));
        check_image_facts(
            &mut r,
            &m,
            &ImageFacts {
                file_size: size >> 20,
                decompressed_size: size,
                frames: data.len(),
            },
        );
        check_streamed(&mut r, &m, &Streamed::default());
    }
    let text = r.to_string();
    assert!(!text.contains(|c| c != '\n' && needs_escape(c)), "{text:?}");
});
