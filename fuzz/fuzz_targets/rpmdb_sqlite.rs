#![no_main]
use libfuzzer_sys::fuzz_target;

// The WAL check is a pure parser; the database itself goes through SQLite on a private copy
// (slow per input, so only inputs that start with the SQLite magic). Input: database bytes, or
// with a leading 0x01 byte a WAL (checked on its own).
fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((1, wal)) => {
            let _ = pkgdb::rpmdb::sqlite::check_wal(wal);
        }
        _ if data.starts_with(b"SQLite format 3\0") => {
            if let Ok(r) = pkgdb::rpmdb::sqlite::read_packages_bytes_checked(data, None) {
                for (n, blob) in &r.records {
                    let _ = pkgdb::rpmdb::trusted_package(*n, blob);
                }
            }
        }
        _ => {}
    }
});
