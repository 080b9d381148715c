#![no_main]
//! `xl list` output parsing must never panic; every domain it returns has a non-empty name and
//! six state flags.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(domains) = deploy::xl::parse_list(text) {
        for d in domains {
            assert!(!d.name.is_empty());
            assert_eq!(d.state.len(), 6);
        }
    }
});
