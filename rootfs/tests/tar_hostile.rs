//! Hand-built hostile archives: each must give the right typed error, never a panic.

mod tar_util;

use std::sync::Arc;

use rootfs::tar::{read_tar, TarError, TarOptions};
use rootfs::{NodeKind, ReadAt, Tree};
use tar_util::{fix_checksum, header};

fn data(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(bytes.len().div_ceil(512) * 512, 0);
    v
}

fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in records {
        let base = k.len() + v.len() + 3;
        let mut len = base + base.to_string().len();
        if len.to_string().len() != base.to_string().len() {
            len += 1;
        }
        body.extend_from_slice(format!("{len} {k}=").as_bytes());
        body.extend_from_slice(v);
        body.push(b'\n');
    }
    body
}

fn archive(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut v: Vec<u8> = parts.concat();
    v.extend_from_slice(&[0u8; 1024]);
    v
}

fn read(bytes: Vec<u8>) -> Result<Tree, TarError> {
    let src: Arc<dyn ReadAt> = Arc::new(bytes);
    read_tar(src, &TarOptions::default()).map(|(t, _)| t)
}

#[test]
fn a_well_formed_hand_made_archive_reads() {
    let a = archive(&[
        header(b"./a/b", b'0', 3, b""),
        data(b"abc"),
        header(b"/abs/c", b'1', 0, b"a/b"),
    ]);
    let t = read(a).unwrap();
    let b = t.lookup(b"/a/b").unwrap();
    assert_eq!(
        t.lookup(b"/abs/c"),
        Some(b),
        "absolute path made relative; hard link shares the node"
    );
    let NodeKind::Regular(c) = &t.node(b).kind else {
        panic!()
    };
    assert_eq!(c.read_to_vec(10).unwrap(), b"abc");
}

#[test]
fn path_escaping_entries_are_refused() {
    for name in [
        &b"../etc/passwd"[..],
        b"a/../../x",
        b"/../root/.ssh/authorized_keys",
    ] {
        let a = archive(&[header(name, b'0', 1, b""), data(b"x")]);
        match read(a) {
            Err(TarError::Path {
                entry, offset: 0, ..
            }) => assert_eq!(entry.as_bytes(), name),
            other => panic!(
                "{}: expected a path error, got {other:?}",
                String::from_utf8_lossy(name)
            ),
        }
    }
    // Through a pax path too, at the second header's offset.
    let p = pax(&[("path", b"x/../../../evil")]);
    let a = archive(&[
        header(b"pax", b'x', p.len() as u64, b""),
        data(&p),
        header(b"innocent", b'0', 0, b""),
    ]);
    assert!(matches!(read(a), Err(TarError::Path { offset: 1024, .. })));
    // A hard link whose target climbs out.
    let a = archive(&[header(b"l", b'1', 0, b"../../etc/shadow")]);
    assert!(matches!(read(a), Err(TarError::Path { .. })));
}

#[test]
fn hard_link_to_a_missing_target_is_refused() {
    let a = archive(&[header(b"l", b'1', 0, b"nothere")]);
    assert!(matches!(
        read(a),
        Err(TarError::MissingLinkTarget { offset: 0, .. })
    ));
}

#[test]
fn bad_checksum_is_refused_with_offset() {
    let mut h = header(b"ok", b'0', 0, b"");
    let mut bad = header(b"bad", b'0', 0, b"");
    bad[0] = b'c';
    h.extend(bad);
    assert!(matches!(
        read(archive(&[h])),
        Err(TarError::BadChecksum { offset: 512, .. })
    ));
}

#[test]
fn truncated_and_absurd_sizes_are_refused() {
    // Data cut short.
    let mut a = [header(b"f", b'0', 5000, b""), data(&[1u8; 100])].concat();
    assert!(matches!(
        read(a.clone()),
        Err(TarError::TooLarge { offset: 0, .. })
    ));
    // Header cut short.
    a = header(b"f", b'0', 0, b"");
    a.truncate(300);
    assert!(matches!(
        read(a),
        Err(TarError::Truncated { offset: 0, .. })
    ));
    // Size of 2^60 (base-256).
    let mut h = header(b"f", b'0', 0, b"");
    h[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    fix_checksum(&mut h);
    assert!(matches!(
        read(archive(&[h])),
        Err(TarError::TooLarge { .. })
    ));
    // Negative size.
    let mut h = header(b"f", b'0', 0, b"");
    h[124..136].copy_from_slice(&[0xff; 12]);
    fix_checksum(&mut h);
    assert!(matches!(
        read(archive(&[h])),
        Err(TarError::BadField { field: "size", .. })
    ));
    // A pax header larger than the cap, and a pax size beyond the archive.
    let a = archive(&[header(b"pax", b'x', 2 << 20, b"")]);
    assert!(matches!(read(a), Err(TarError::TooLarge { .. })));
    let p = pax(&[("size", b"99999999999999")]);
    let a = archive(&[
        header(b"pax", b'x', p.len() as u64, b""),
        data(&p),
        header(b"f", b'0', 0, b""),
    ]);
    assert!(matches!(
        read(a),
        Err(TarError::TooLarge { offset: 1024, .. })
    ));
    // Many extended headers in a row, each under the cap, together over it.
    let big = vec![b'a'; 600 * 1024];
    let p = pax(&[("comment", &big)]);
    let x = [header(b"pax", b'x', p.len() as u64, b""), data(&p)].concat();
    let a = archive(&[x.clone(), x, header(b"f", b'0', 0, b"")]);
    assert!(matches!(
        read(a),
        Err(TarError::TooLarge {
            what: "extended header records held at once",
            ..
        })
    ));
    // An extended header with nothing after it.
    let p = pax(&[("path", b"x")]);
    let a = [header(b"pax", b'x', p.len() as u64, b""), data(&p)].concat();
    assert!(matches!(read(a), Err(TarError::Truncated { .. })));
}

#[test]
fn malformed_pax_records_are_refused() {
    for body in [
        &b"999 path=x\n"[..],
        b"5 path=x\n",
        b"abc path=x\n",
        b"12 pathx\n\n\n\n",
        b"11 path=xyz",
    ] {
        let a = archive(&[
            header(b"pax", b'x', body.len() as u64, b""),
            data(body),
            header(b"f", b'0', 0, b""),
        ]);
        assert!(
            matches!(read(a), Err(TarError::Pax { offset: 0, .. })),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let p = pax(&[("uid", b"-5")]);
    let a = archive(&[
        header(b"pax", b'x', p.len() as u64, b""),
        data(&p),
        header(b"f", b'0', 0, b""),
    ]);
    assert!(matches!(
        read(a),
        Err(TarError::BadField {
            field: "pax uid",
            ..
        })
    ));
    let p = pax(&[("mtime", b"12.x")]);
    let a = archive(&[
        header(b"pax", b'x', p.len() as u64, b""),
        data(&p),
        header(b"f", b'0', 0, b""),
    ]);
    assert!(matches!(
        read(a),
        Err(TarError::BadField {
            field: "pax mtime",
            ..
        })
    ));
}

#[test]
fn pax_times_xattrs_and_ids_are_honoured() {
    let p = pax(&[
        ("mtime", b"1700000000.5"),
        ("atime", b"-1.25"),
        ("uid", b"4000000000"),
        ("SCHILY.xattr.security.capability", b"\x01\x00\n\x00="),
        ("LIBARCHIVE.xattr.user.a%3Db", b"aGk="),
        ("path", b"dir/file"),
    ]);
    let a = archive(&[
        header(b"pax", b'x', p.len() as u64, b""),
        data(&p),
        header(b"short", b'0', 2, b""),
        data(b"hi"),
    ]);
    let t = read(a).unwrap();
    let n = t.node(t.lookup(b"/dir/file").unwrap());
    assert_eq!(
        (n.meta.mtime.sec, n.meta.mtime.nsec),
        (1_700_000_000, 500_000_000)
    );
    assert_eq!((n.meta.atime.sec, n.meta.atime.nsec), (-2, 750_000_000));
    assert_eq!(n.meta.uid, 4_000_000_000);
    assert_eq!(
        n.meta.xattrs.get(&b"security.capability"[..]).unwrap(),
        b"\x01\x00\n\x00="
    );
    assert_eq!(n.meta.xattrs.get(&b"user.a=b"[..]).unwrap(), b"hi");
}

#[test]
fn bad_sparse_maps_are_refused() {
    // pax 0.1 map reaching past the real size.
    let p = pax(&[
        ("GNU.sparse.size", b"100"),
        ("GNU.sparse.numblocks", b"1"),
        ("GNU.sparse.map", b"90,20"),
    ]);
    let a = archive(&[
        header(b"pax", b'x', p.len() as u64, b""),
        data(&p),
        header(b"s", b'0', 20, b""),
        data(&[7; 20]),
    ]);
    assert!(matches!(
        read(a),
        Err(TarError::Sparse { offset: 1024, .. })
    ));
    // Map whose chunks do not add up to the stored size.
    let p = pax(&[("GNU.sparse.size", b"100"), ("GNU.sparse.map", b"0,10")]);
    let a = archive(&[
        header(b"pax", b'x', p.len() as u64, b""),
        data(&p),
        header(b"s", b'0', 20, b""),
        data(&[7; 20]),
    ]);
    assert!(matches!(read(a), Err(TarError::Sparse { .. })));
    // pax 1.0 claiming a huge number of entries.
    let p = pax(&[
        ("GNU.sparse.major", b"1"),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.realsize", b"10"),
    ]);
    let map = b"99999999999999\n0\n";
    let a = archive(&[
        header(b"pax", b'x', p.len() as u64, b""),
        data(&p),
        header(b"s", b'0', 512, b""),
        data(map),
    ]);
    assert!(matches!(read(a), Err(TarError::Sparse { .. })));
    // pax 1.0 well formed: 2 chunks.
    let map = b"2\n0\n3\n8\n2\n";
    let mut body = data(map);
    body.extend(data(b"abcxy"));
    let a = archive(&[
        header(b"pax", b'x', p.len() as u64, b""),
        data(&p),
        header(b"s", b'0', 512 + 5, b""),
        body,
    ]);
    let t = read(a).unwrap();
    let NodeKind::Regular(c) = &t.node(t.lookup(b"/s").unwrap()).kind else {
        panic!()
    };
    assert_eq!(c.read_to_vec(100).unwrap(), b"abc\0\0\0\0\0xy");
    // Old GNU 'S' with an overlapping map.
    let mut h = header(b"s", b'S', 4, b"");
    h[257..265].copy_from_slice(b"ustar  \0");
    h[386..398].copy_from_slice(b"00000000010\0");
    h[398..410].copy_from_slice(b"00000000002\0");
    h[410..422].copy_from_slice(b"00000000005\0");
    h[422..434].copy_from_slice(b"00000000002\0");
    h[483..495].copy_from_slice(b"00000000020\0");
    fix_checksum(&mut h);
    let a = archive(&[h, data(b"abcd")]);
    assert!(matches!(read(a), Err(TarError::Sparse { offset: 0, .. })));
}

/// Flip bytes of a real GNU tar archive at many seeded positions: errors are fine, panics are not.
#[test]
fn seeded_corruption_sweep_never_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("s");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f"), vec![3u8; 3000]).unwrap();
    std::fs::write(src.join("x".repeat(150)), b"long").unwrap();
    std::os::unix::fs::symlink("y".repeat(120), src.join("l")).unwrap();
    std::fs::hard_link(src.join("d/f"), src.join("h")).unwrap();
    let f = std::fs::File::create(src.join("sp")).unwrap();
    f.set_len(1 << 20).unwrap();
    drop(f);
    let mut seed: u64 = 0x1234_5678;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for fmt in ["--format=gnu", "--format=posix"] {
        let out = tmp.path().join("a.tar");
        let st = std::process::Command::new("tar")
            .args([fmt, "--sparse", "-cf"])
            .arg(&out)
            .arg("-C")
            .arg(&src)
            .arg(".")
            .status()
            .expect("GNU tar (Debian package tar) is needed");
        assert!(st.success());
        let orig = std::fs::read(&out).unwrap();
        let header_blocks: Vec<usize> = (0..orig.len() / 512)
            .filter(|i| orig[i * 512..i * 512 + 512].iter().any(|&b| b != 0))
            .collect();
        for _ in 0..1500 {
            let mut a = orig.clone();
            let blk = header_blocks[(next() % header_blocks.len() as u64) as usize];
            for _ in 0..(1 + next() % 4) {
                let pos = blk * 512 + (next() % 512) as usize;
                a[pos] = next() as u8;
            }
            if next() % 4 == 0 {
                let cut = (next() % a.len() as u64) as usize;
                a.truncate(cut);
            }
            let _ = read(a);
        }
    }
}
