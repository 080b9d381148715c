#![no_main]
//! trust.toml parsing and the version compare on hostile input.
use libfuzzer_sys::fuzz_target;
use trust::store::{compare_versions, glob_match, TrustConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = TrustConfig::from_toml(text, "trust.toml");
    let mid = (0..=text.len() / 2).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    let (a, b) = text.split_at(mid);
    assert_eq!(compare_versions(a, b), compare_versions(b, a).reverse());
    let _ = glob_match(a, b);
    let _ = trust::time::parse_rfc3339(text);
});
