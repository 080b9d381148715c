#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = pkgdb::rpm::Header::parse(data) {
        // Header digests over the region, as a database read checks them.
        let _ = h.verify_digests(data);
        let again = h.to_bytes();
        let _ = pkgdb::rpm::Header::parse(&again);
        if let Ok(p) = pkgdb::rpm::Package::from_header(h) {
            let _ = p.files();
        }
    }
    let _ = pkgdb::rpmdb::trusted_package(1, data);
});
