//! ELF hardening against rpm's test binaries; expected values from testdata/elf-rpm-tests-misc/expected.csv
//! (computed with readelf and checksec).

use vetter::elf::{analyse, Pie, Relro};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/elf-rpm-tests-misc"
);

/// Split one CSV line with double-quoted fields.
fn csv(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out
}

#[test]
fn hardening_matches_expected_csv() {
    let text = std::fs::read_to_string(format!("{DIR}/expected.csv")).unwrap();
    let mut lines = text.lines();
    let header = csv(lines.next().unwrap());
    assert_eq!(
        &header[..9],
        [
            "file",
            "e_type",
            "pie",
            "relro",
            "nx(gnu_stack)",
            "canary",
            "rpath",
            "runpath",
            "needed"
        ]
    );
    let mut n = 0;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f = csv(line);
        let bytes = std::fs::read(format!("{DIR}/{}", f[0])).unwrap();
        let info = analyse(&bytes, None).unwrap_or_else(|e| panic!("{}: {e}", f[0]));
        assert_eq!(info.machine, "x86_64");
        // e_type column: "EXEC", "DYN (FLAGS_1=PIE)", "DYN (shared object)".
        assert_eq!(
            info.e_type,
            f[1].split_whitespace().next().unwrap(),
            "{}",
            f[0]
        );
        let pie = match f[2].as_str() {
            "yes" => Pie::Yes,
            "no" => Pie::No,
            "DSO" => Pie::Dso,
            other => panic!("pie column {other}"),
        };
        assert_eq!(info.pie, pie, "{}", f[0]);
        let relro = match f[3].as_str() {
            "full" => Relro::Full,
            "partial" => Relro::Partial,
            "no" | "none" => Relro::None,
            other => panic!("relro column {other}"),
        };
        assert_eq!(info.relro, relro, "{}", f[0]);
        assert_eq!(info.nx, f[4].starts_with("yes"), "{}", f[0]);
        assert_eq!(info.canary, f[5] == "yes", "{}", f[0]);
        let rpath: Vec<&str> = info.rpath.iter().map(|r| r.entry.as_str()).collect();
        let runpath: Vec<&str> = info.runpath.iter().map(|r| r.entry.as_str()).collect();
        let want = |s: &str| {
            if s.is_empty() {
                Vec::new()
            } else {
                s.split(':').map(str::to_string).collect::<Vec<_>>()
            }
        };
        assert_eq!(rpath, want(&f[6]), "{}", f[0]);
        assert_eq!(runpath, want(&f[7]), "{}", f[0]);
        // $ORIGIN entries are not relative.
        assert!(info
            .rpath
            .iter()
            .chain(&info.runpath)
            .all(|r| !r.relative && !r.world_writable));
        let needed: Vec<String> = f[8].split(';').map(str::to_string).collect();
        assert_eq!(info.needed, needed, "{}", f[0]);
        n += 1;
    }
    assert_eq!(n, 4);
}

#[test]
fn malformed_elf_is_an_error_not_a_crash() {
    let bytes = std::fs::read(format!("{DIR}/hellopie")).unwrap();
    for cut in [4usize, 20, 63, 64, 200, 1000, bytes.len() / 2] {
        let _ = analyse(&bytes[..cut], None);
    }
    let mut bad = bytes.clone();
    // Program header offset far outside the file.
    bad[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(analyse(&bad, None).is_err());
    assert!(analyse(b"#!/bin/sh\n", None).is_err());
}
