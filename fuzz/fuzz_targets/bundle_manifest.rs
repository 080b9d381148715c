#![no_main]
//! `wafer.json` on hostile input: `bundle::Manifest::from_json` (strict: unknown fields, other
//! formats, wrong types refused) never panics; whatever it accepts writes back with
//! `to_json` into bytes that parse to the same manifest and write to the same bytes again
//! (the builder's stable form is a fixed point). `bundle::parse_manifest`'s error names the file.
use bundle::{parse_manifest, Manifest};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let parsed = Manifest::from_json(data);
    match (&parsed, parse_manifest(Path::new("b/wafer.json"), data)) {
        (Ok(a), Ok(b)) => assert_eq!(a, &b),
        (Err(_), Err(e)) => assert!(e.to_string().starts_with("b/wafer.json: "), "{e}"),
        (a, b) => panic!("from_json and parse_manifest disagree: {a:?} / {b:?}"),
    }
    let Ok(m) = parsed else { return };
    assert_eq!(m.format, bundle::FORMAT);
    let bytes = m.to_json().expect("a parsed manifest serialises");
    let back = Manifest::from_json(&bytes).expect("the stable form parses");
    assert_eq!(back, m);
    assert_eq!(back.to_json().expect("serialises"), bytes);
});
