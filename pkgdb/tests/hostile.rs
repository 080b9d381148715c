//! Hostile input: seeded corruptions of every fixture database and header must give typed
//! errors or data, never a panic or a hang.
mod common;
use common::*;
use pkgdb::rpm::{Header, Package};
use pkgdb::rpmdb::{bdb, ndb};
use std::time::{Duration, Instant};

fn corrupt(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    match rng.below(4) {
        0 => {
            let cut = rng.below(b.len() as u64) as usize;
            b.truncate(cut);
        }
        1 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(b.len() as u64) as usize;
                b[i] = rng.next() as u8;
            }
        }
        2 => {
            // Absurd 32-bit values at aligned offsets (counts, lengths, page numbers).
            for _ in 0..1 + rng.below(4) {
                let i = (rng.below(b.len() as u64 / 4) * 4) as usize;
                let v: [u8; 4] = *rng.pick(&[
                    [0xff; 4],
                    [0, 0, 0, 0],
                    [0x7f, 0xff, 0xff, 0xff],
                    [0, 0, 1, 0],
                ]);
                b[i..i + 4].copy_from_slice(&v);
            }
        }
        _ => {
            let i = rng.below(b.len() as u64) as usize;
            let j = rng.below(b.len() as u64) as usize;
            b.swap(i, j);
        }
    }
    b
}

fn use_blob(blob: &[u8]) {
    if let Ok(h) = Header::parse(blob) {
        let _ = h.to_bytes();
        if let Ok(p) = Package::from_header(h) {
            let _ = p.files();
        }
    }
}

fn sweep(name: &str, base: &[u8], rounds: u32, f: impl Fn(&[u8])) {
    let mut rng = Rng(0xc0ff_ee00 ^ base.len() as u64);
    let t = Instant::now();
    for _ in 0..rounds {
        let b = corrupt(&mut rng, base);
        f(&b);
    }
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "{name}: sweep too slow"
    );
}

#[test]
fn bdb_corruptions() {
    for fx in [
        "rpmdb-bdb-go-rpmdb-libuuid/Packages",
        "rpmdb-bdb-syft-dive/Packages",
    ] {
        let base = std::fs::read(testdata(fx)).unwrap();
        sweep(fx, &base, 400, |b| {
            if let Ok(recs) = bdb::read_packages(b) {
                for (_, blob) in recs {
                    use_blob(&blob);
                }
            }
        });
    }
}

#[test]
fn bdb_overflow_loop_and_out_of_range() {
    let mut base = std::fs::read(testdata("rpmdb-bdb-go-rpmdb-libuuid/Packages")).unwrap();
    let ps = 4096;
    let ovf: Vec<usize> = (1..base.len() / ps)
        .filter(|p| base[p * ps + 25] == 7)
        .collect();
    assert!(ovf.len() > 1, "fixture has an overflow chain");
    // Last page of the chain points back at the first: a loop.
    let last = *ovf
        .iter()
        .find(|&&p| base[p * ps + 16..p * ps + 20] == [0, 0, 0, 0])
        .unwrap();
    let mut looped = base.clone();
    looped[last * ps + 16..last * ps + 20].copy_from_slice(&(ovf[0] as u32).to_le_bytes());
    // Make the record claim more bytes than the chain holds so the reader keeps following.
    for p in 1..looped.len() / ps {
        if looped[p * ps + 25] == 13 || looped[p * ps + 25] == 2 {
            let n = u16::from_le_bytes([looped[p * ps + 20], looped[p * ps + 21]]) as usize;
            for i in 0..n {
                let off =
                    u16::from_le_bytes([looped[p * ps + 26 + 2 * i], looped[p * ps + 27 + 2 * i]])
                        as usize;
                if looped[p * ps + off] == 3 {
                    looped[p * ps + off + 8..p * ps + off + 12]
                        .copy_from_slice(&90_000u32.to_le_bytes());
                }
            }
        }
    }
    let r = bdb::read_packages(&looped);
    assert!(
        matches!(r, Err(bdb::BdbError::BadOverflow { .. })),
        "{:?}",
        r.map(|v| v.len())
    );
    // Chain pointing past the end of the file.
    base[ovf[0] * ps + 16..ovf[0] * ps + 20].copy_from_slice(&9999u32.to_le_bytes());
    let r = bdb::read_packages(&base);
    assert!(
        matches!(r, Err(bdb::BdbError::PageOutOfRange { page: 9999, .. })),
        "{:?}",
        r.map(|v| v.len())
    );
}

#[test]
fn ndb_corruptions() {
    let base = std::fs::read(testdata("rpmdb-ndb-go-rpmdb-sle15-bci/Packages.db")).unwrap();
    sweep("ndb", &base, 300, |b| {
        if let Ok(recs) = ndb::read_packages(b) {
            for (_, blob) in recs {
                use_blob(&blob);
            }
        }
    });
}

#[test]
fn header_corruptions() {
    let blob = std::fs::read(testdata("rpm-header-blob-go-rpmdb/blob.bin")).unwrap();
    sweep("blob", &blob, 3000, use_blob);
    let db = pkgdb::read_rpmdb(&testdata("rpmdb-sqlite-go-rpmdb-cbl-mariner-2.0")).unwrap();
    for p in db.iter().take(5) {
        sweep(&p.name, &p.header.to_bytes(), 500, use_blob);
    }
}

#[test]
fn sqlite_corruptions_are_errors() {
    let base = std::fs::read(testdata("rpmdb-sqlite-rpm-upstream-tests/rpmdb.sqlite")).unwrap();
    sweep("sqlite", &base, 40, |b| {
        if let Ok(recs) = pkgdb::rpmdb::sqlite::read_packages_bytes(b, None) {
            for (_, blob) in recs {
                use_blob(&blob);
            }
        }
    });
}

#[test]
fn rpm_package_garbage() {
    let mut rng = Rng(42);
    for _ in 0..200 {
        let mut b = vec![0xed, 0xab, 0xee, 0xdb];
        b.extend((0..rng.below(400)).map(|_| rng.next() as u8));
        if let Ok(mut p) = pkgdb::rpm::RpmPackage::open(std::io::Cursor::new(b)) {
            while let Ok(Some(_)) = p.next_entry() {}
        }
    }
}

#[test]
fn dpkg_garbage() {
    let mut rng = Rng(7);
    let base = "Package: a\nStatus: install ok installed\nVersion: 1:2.3-4\nDescription: x\n y\n\n";
    for _ in 0..500 {
        let s = String::from_utf8_lossy(&corrupt(&mut rng, base.as_bytes())).into_owned();
        let _ = pkgdb::dpkg::parse_status(&s, "status");
    }
}
