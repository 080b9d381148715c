#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(recs) = pkgdb::rpmdb::bdb::read_packages(data) {
        // The index files rpm --rebuilddb would write, from hostile headers.
        use pkgdb::rpmdb::bdb_index::{build_indexes, Layout};
        for layout in [Layout::Rpm44, Layout::Rpm48, Layout::Unknown] {
            let _ = build_indexes(&recs, layout);
        }
        for (_, blob) in recs {
            if let Ok(h) = pkgdb::rpm::Header::parse(&blob) {
                let _ = pkgdb::rpm::Package::from_header(h).map(|p| p.files());
            }
        }
    }
});
