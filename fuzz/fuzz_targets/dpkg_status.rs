#![no_main]
//! dpkg's status file as dpkg reads it (stanza scanner, field checks, package slots), also as a
//! journal entry applied over it; and dpkg versions.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(pkgs) = pkgdb::dpkg::parse_status_bytes(data, "status") {
        for p in &pkgs {
            // Everything derived from a parsed package must be usable.
            let _ = (p.state.abbrev(), p.state.words(), p.is_listed());
            assert!(!p.name.is_empty());
        }
    }
    // The same bytes split in two: a status file and an update over it.
    let mid = data.len() / 2;
    let mut db = pkgdb::dpkg::Db::new();
    if db
        .add_file(&data[..mid], "status", pkgdb::dpkg::FileKind::Status)
        .is_ok()
    {
        let _ = db.add_file(&data[mid..], "updates/0000", pkgdb::dpkg::FileKind::Update);
    }
    let _ = db.packages();
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = pkgdb::version::DpkgVersion::parse_strict(s);
        let _ = pkgdb::version::rpmvercmp(s, "1.0~rc1^git2");
    }
});
