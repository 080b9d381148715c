#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(recs) = pkgdb::rpmdb::ndb::read_packages(data) {
        for (_, blob) in recs {
            if let Ok(h) = pkgdb::rpm::Header::parse(&blob) {
                let _ = pkgdb::rpm::Package::from_header(h).map(|p| p.files());
            }
        }
    }
});
