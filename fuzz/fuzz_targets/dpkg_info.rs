#![no_main]
//! dpkg's `info/*.list`, `info/*.md5sums` (and distroless `status.d/*.md5sums`) and `diversions`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(l) = pkgdb::dpkg::parse_list(data, "x.list") {
        assert!(l.iter().all(|p| p.first() == Some(&b'/')));
    }
    if let Ok(m) = pkgdb::dpkg::parse_md5sums(data, "x.md5sums") {
        assert!(m.iter().all(|(_, p)| p.first() == Some(&b'/')));
    }
    let _ = pkgdb::dpkg::parse_diversions(data, "diversions");
});
