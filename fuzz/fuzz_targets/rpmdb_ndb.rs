#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(read) = pkgdb::rpmdb::ndb::read_packages_checked(data) {
        for d in &read.damage {
            let _ = d.to_string();
        }
        for (n, blob) in &read.records {
            if let Ok(p) = pkgdb::rpmdb::trusted_package(*n, blob) {
                let _ = p.files();
            }
        }
    }
});
