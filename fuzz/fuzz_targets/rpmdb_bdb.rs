#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The checked read keeps going past damage: everything it returns is then used.
    if let Ok(read) = pkgdb::rpmdb::bdb::read_packages_checked(data) {
        for d in &read.damage {
            let _ = d.to_string();
        }
        // The index files rpm --rebuilddb would write, from hostile headers.
        use pkgdb::rpmdb::bdb_index::{build_indexes, Layout};
        for layout in [Layout::Rpm44, Layout::Rpm48, Layout::Unknown] {
            let _ = build_indexes(&read.records, layout);
        }
        for (n, blob) in &read.records {
            if let Ok(p) = pkgdb::rpmdb::trusted_package(*n, blob) {
                let _ = p.files();
            }
        }
    }
    let _ = pkgdb::rpmdb::bdb::read_packages(data);
});
