#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = pkgdb::dpkg::parse_status(&text, "status");
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = pkgdb::version::DpkgVersion::parse_strict(s);
        let _ = pkgdb::version::rpmvercmp(s, "1.0~rc1^git2");
    }
});
