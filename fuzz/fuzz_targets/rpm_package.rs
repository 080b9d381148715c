#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let owned = data.to_vec();
    if let Ok(mut p) = pkgdb::rpm::RpmPackage::open(std::io::Cursor::new(owned)) {
        let mut n = 0;
        while let Ok(Some(mut e)) = p.next_entry() {
            let _ = std::io::copy(&mut e, &mut std::io::sink());
            n += 1;
            if n > 10_000 {
                break;
            }
        }
    }
});
