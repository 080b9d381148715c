#![no_main]
//! xl.cfg, disk spec and vif spec parsing must never panic; a parsed guest config that writes
//! back out must read back to the same value.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = deploy::xl::XlConfig::parse(text) {
        if let Ok(g) = deploy::xl::GuestConfig::from_config(&cfg) {
            if let Ok(out) = g.to_xl() {
                let back = deploy::xl::XlConfig::parse(&out).expect("our own output parses");
                let g2 = deploy::xl::GuestConfig::from_config(&back).expect("our own output reads back");
                assert_eq!(g, g2);
            }
        }
    }
    let specs: Vec<&str> = text.split('\u{1}').collect();
    if let Ok(d) = deploy::xl::parse_disk(&specs) {
        let _ = deploy::xl::parse_disk(&[&d.to_spec()]);
    }
    let _ = deploy::xl::parse_vif(text);
});
