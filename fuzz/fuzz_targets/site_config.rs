#![no_main]
//! Site TOML parsing and validation must never panic or allocate without bound.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = deploy::site::Site::from_toml_str(text, "fuzz.toml", Some(std::path::Path::new("/srv")));
    }
});
