//! Hostile inputs that cost nothing to make and used to cost unbounded memory, time or space:
//! a tar of one entry 100,000 directories deep, a million-entry tree, sparse members of 4 GiB
//! and 1 TiB, an ext image with a corrupt `i_size`, a zstd bomb, FIFOs where files belong.
//! Each must end in a bounded outcome (a clear refusal or a file reported as not hashed).
//!
//! Runaway work is caught by running `wafer` in a child with a generous deadline (a regression
//! fails instead of hanging the suite); memory by the child's peak RSS from `/usr/bin/time -f %M`
//! (Debian package `time`), compared with the same command on a one-entry archive.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Generous deadline for one `wafer` run: real work here takes seconds.
const DEADLINE: Duration = Duration::from_secs(600);

/// Run `wafer args` in a child, killing it (and failing) if it outlives [`DEADLINE`].
fn wafer_bounded(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wafer");
    wait_bounded(child, args)
}

fn wait_bounded(mut child: std::process::Child, what: &[&str]) -> Output {
    let start = Instant::now();
    // Drain the pipes in threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).ok();
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).ok();
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > DEADLINE {
            child.kill().ok();
            child.wait().ok();
            panic!("wafer {what:?} still running after {DEADLINE:?}: unbounded work");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: t_out.join().expect("stdout thread"),
        stderr: t_err.join().expect("stderr thread"),
    }
}

/// Peak resident memory (bytes) of `wafer args`, and its output (stderr without the last line,
/// which is `time`'s).
fn peak_rss(args: &[&str]) -> (u64, Output) {
    let child = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_wafer"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run /usr/bin/time (Debian package time)");
    let mut o = wait_bounded(child, args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let mut lines: Vec<&str> = err.lines().collect();
    let last = lines.pop().expect("time's line");
    let kib: u64 = last
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("time -f %M printed {last:?}; stderr: {err}"));
    o.stderr = lines.join("\n").into_bytes();
    (kib * 1024, o)
}

/// One ustar header with a valid checksum.
fn header(name: &[u8], typeflag: u8, size: u64, magic_pax: bool) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(if typeflag == b'5' {
        b"0000755\0"
    } else {
        b"0000644\0"
    });
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"14000000000\0");
    h[156] = typeflag;
    if magic_pax {
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
    }
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A pax `x` header carrying `path`, then a directory header: one entry whose path is `path`.
fn pax_dir_entry(path: &[u8]) -> Vec<u8> {
    let key_val = [b"path=".as_slice(), path, b"\n"].concat();
    let mut len = key_val.len() + 1;
    while format!("{len} ").len() + key_val.len() != len {
        len = format!("{len} ").len() + key_val.len();
    }
    let record = [format!("{len} ").as_bytes(), &key_val].concat();
    let mut v = header(b"PaxHeaders/deep", b'x', record.len() as u64, true).to_vec();
    v.extend_from_slice(&record);
    v.resize(v.len().div_ceil(512) * 512, 0);
    v.extend_from_slice(&header(b"deep", b'5', 0, true));
    v
}

fn end_of_archive(v: &mut Vec<u8>) {
    v.extend_from_slice(&[0u8; 1024]);
}

/// A tar holding one directory 100,000 levels deep (`a/a/.../a`), gzip-compressed by the real
/// gzip: a few hundred bytes.
fn deep_tar_gz(dir: &Path, depth: usize) -> std::path::PathBuf {
    let path: Vec<u8> = vec![&b"a"[..]; depth].join(&b'/');
    let mut tar = pax_dir_entry(&path);
    end_of_archive(&mut tar);
    let plain = dir.join("deep.tar");
    fs::write(&plain, &tar).unwrap();
    run(Command::new("gzip").args(["-9", "-f"]).arg(&plain));
    dir.join("deep.tar.gz")
}

#[test]
fn a_tar_100000_directories_deep_is_refused_in_linear_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let deep = deep_tar_gz(tmp.path(), 100_000);
    assert!(
        fs::metadata(&deep).unwrap().len() < 1024,
        "the attack is tiny"
    );
    let mut small = header(b"etc/", b'5', 0, true).to_vec();
    end_of_archive(&mut small);
    let small_path = tmp.path().join("small.tar");
    fs::write(&small_path, &small).unwrap();

    let entries: u64 = 100_001;
    for cmd in ["inspect", "ls"] {
        let (base, o) = peak_rss(&[cmd, s(&small_path)]);
        assert!(o.status.success(), "{cmd} small: {}", stderr(&o));
        let (peak, o) = peak_rss(&[cmd, s(&deep)]);
        // inspect: 2, "could not read"; ls: 1, an error
        let want = if cmd == "inspect" { 2 } else { 1 };
        assert_eq!(o.status.code(), Some(want), "{cmd}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("exceeds the 4096 byte path limit") && err.contains("deep.tar.gz"),
            "{cmd}: {err}"
        );
        // Under 1 KiB per entry above what the one-entry archive needs.
        assert!(
            peak < base + entries * 1024,
            "{cmd}: peak RSS {peak} bytes for {entries} entries (one-entry archive: {base})"
        );
    }
    // Raising the limit is the reviewer's explicit choice; a modest depth then inspects.
    let shallow = deep_tar_gz(tmp.path(), 3000);
    let o = wafer_bounded(&["inspect", "--json", "--max-path", "8000", s(&shallow)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let inv: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(inv["files"]["inodes"], 3001);
}

/// The tree of the million-entry test: `d000/f000` .. `d999/f999`, 1000 directories of 1000
/// empty files (1,001,001 entries with the root), as a plain ustar archive.
fn million_tar(path: &Path) {
    let f = fs::File::create(path).unwrap();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    for d in 0..1000 {
        w.write_all(&header(format!("d{d:03}/").as_bytes(), b'5', 0, true))
            .unwrap();
        for i in 0..1000 {
            w.write_all(&header(
                format!("d{d:03}/f{i:03}").as_bytes(),
                b'0',
                0,
                true,
            ))
            .unwrap();
        }
    }
    w.write_all(&[0u8; 1024]).unwrap();
    w.flush().unwrap();
}

#[test]
fn a_million_entry_tree_inspects_in_under_1_kib_per_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("million.tar");
    million_tar(&big);
    let mut small = header(b"etc/", b'5', 0, true).to_vec();
    end_of_archive(&mut small);
    let small_path = tmp.path().join("small.tar");
    fs::write(&small_path, &small).unwrap();
    let (base, o) = peak_rss(&["inspect", s(&small_path)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (peak, o) = peak_rss(&["inspect", s(&big)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = stdout(&o);
    assert!(summary.contains("1001001 inodes"), "{summary}");
    let entries: u64 = 1_001_001;
    assert!(
        peak < base + entries * 1024,
        "peak RSS {peak} bytes for {entries} entries (one-entry archive: {base})"
    );
}

/// A directory of sparse files made with `truncate`, archived by GNU tar `--sparse`: a 10 KB
/// archive declaring 12 GiB of 4 GiB files and a 1 TiB one.
fn sparse_tar(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("sparse");
    fs::create_dir(&src).unwrap();
    for (name, size) in [("a", "4G"), ("b", "4G"), ("c", "4G"), ("lastlog", "1T")] {
        run(Command::new("truncate")
            .args(["-s", size])
            .arg(src.join(name)));
    }
    fs::write(src.join("small"), b"not sparse\n").unwrap();
    let tar = dir.join("sparse.tar");
    run(Command::new("tar")
        .args(["--sparse", "--format=pax", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg("."));
    assert!(fs::metadata(&tar).unwrap().len() < 64 << 10);
    tar
}

#[test]
fn sparse_members_are_reported_not_hashed_instead_of_hashing_terabytes() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = sparse_tar(tmp.path());

    let o = wafer_bounded(&["inspect", "--json", s(&tar)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let inv: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let not_hashed: Vec<(String, String)> = inv["files"]["not_hashed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let paths: Vec<&str> = not_hashed.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["/a", "/b", "/c", "/lastlog"], "{not_hashed:?}");
    for (p, why) in &not_hashed {
        if p == "/lastlog" {
            assert!(
                why.contains("larger than the 4294967296 byte hashing limit"),
                "{why}"
            );
        } else {
            assert!(why.contains("budget for hashing holes"), "{why}");
        }
    }
    // The dense file is hashed, with the sha256 of its bytes.
    let small = inv["files"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["paths"][0] == "/small")
        .unwrap();
    use sha2::Digest;
    assert_eq!(
        small["sha256"],
        hex::encode(sha2::Sha256::digest(b"not sparse\n"))
    );

    // With room in the hole budget for one 4 GiB file, that one (only) is hashed, and its
    // digest is the real one (sha256sum of the truncated file agrees).
    let o = wafer_bounded(&["inspect", "--json", "--hash-holes", "5G", s(&tar)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let inv: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(inv["files"]["not_hashed"].as_array().unwrap().len(), 3);
    assert_eq!(inv["files"]["hashed"], 2);

    // ls -l: every sparse member shown as not hashed, with a warning naming it.
    let o = wafer_bounded(&["ls", "--long", s(&tar)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for name in ["/a", "/b", "/c", "/lastlog"] {
        let line = out
            .lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("{name} in {out}"));
        assert!(line.contains(" not-hashed "), "{line}");
        assert!(
            stderr(&o).contains(&format!("{name}: not hashed: ")),
            "{}",
            stderr(&o)
        );
    }
    let o = wafer_bounded(&["ls", "--json", s(&tar)]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let lastlog = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "/lastlog")
        .unwrap();
    assert_eq!(lastlog["sha256"], serde_json::Value::Null);
    assert!(lastlog["not_hashed"].as_str().unwrap().contains("limit"));
}

#[test]
fn an_ext_file_with_a_corrupt_i_size_is_not_read_for_ever() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("f"), b"hello").unwrap();
    let img = tmp.path().join("img");
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&root)
        .arg(&img)
        .arg("4M"));
    // 1 TiB, 2 GiB: both far past the one block the file holds.
    for size in ["0x10000000000", "0x80000000"] {
        run(Command::new("debugfs")
            .args(["-w", "-R", &format!("sif /f size {size}")])
            .arg(&img));
        let o = wafer_bounded(&["ls", "--long", s(&img)]);
        assert!(o.status.success(), "{}", stderr(&o));
        let line = stdout(&o)
            .lines()
            .find(|l| l.ends_with(" /f"))
            .unwrap()
            .to_string();
        assert!(line.contains(" not-hashed "), "{line}");
        let o = wafer_bounded(&["inspect", "--json", s(&img)]);
        assert!(o.status.success(), "{}", stderr(&o));
        let inv: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(inv["files"]["not_hashed"][0]["path"], "/f", "{inv}");
    }
}

#[test]
fn a_zstd_bomb_stops_at_the_spool_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let bomb = tmp.path().join("bomb.tar.zst");
    // One member of 1 GiB of zeros, compressed by the real zstd into ~33 KB.
    let out = fs::File::create(&bomb).unwrap();
    let mut z = Command::new("zstd")
        .args(["-q", "-3", "-c"])
        .stdin(Stdio::piped())
        .stdout(out)
        .spawn()
        .expect("zstd");
    {
        let mut w = z.stdin.take().unwrap();
        w.write_all(&header(b"zeros", b'0', 1 << 30, true)).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            w.write_all(&zeros).unwrap();
        }
        w.write_all(&[0u8; 1024]).unwrap();
    }
    assert!(z.wait().unwrap().success());
    let compressed = fs::metadata(&bomb).unwrap().len();
    assert!(compressed < 100 << 10, "{compressed}");

    let spool = tmp.path().join("spool");
    fs::create_dir(&spool).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args(["inspect", s(&bomb)])
        .env("TMPDIR", &spool)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = wait_bounded(child, &["inspect", "bomb"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "inspect exits 2 when it could not read the image"
    );
    let err = stderr(&o);
    assert!(
        err.contains("bomb.tar.zst")
            && err.contains("exceeds the spool budget of 268435456 bytes")
            && err.contains("--max-spool"),
        "{err}"
    );
    // The spool is anonymous and gone.
    assert_eq!(fs::read_dir(&spool).unwrap().count(), 0);

    let o = wafer_bounded(&["ls", "--max-spool", "1M", s(&bomb)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("spool budget of 1048576 bytes"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn fifos_where_files_belong_are_refused_without_hanging() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("disk.img");
    run(Command::new("mkfifo").arg(&fifo));
    for args in [
        vec!["inspect", s(&fifo)],
        vec!["ls", s(&fifo)],
        vec!["mkfs", s(&fifo), "-o", "/dev/null/never"],
    ] {
        let o = wafer_bounded(&args);
        let want = if args[0] == "inspect" { 2 } else { 1 };
        assert_eq!(o.status.code(), Some(want), "{args:?}");
        assert!(
            stderr(&o).contains("is a FIFO where a regular file was expected"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    // A bundle whose disk.img.zst is a FIFO: read as a directory holding a FIFO, or refused,
    // but never opened for reading (which would wait for a writer for ever).
    let bundle = tmp.path().join("bundle");
    fs::create_dir(&bundle).unwrap();
    fs::write(bundle.join("wafer.json"), b"{}").unwrap();
    run(Command::new("mkfifo").arg(bundle.join("disk.img.zst")));
    let o = wafer_bounded(&["ls", "--long", s(&bundle)]);
    if o.status.success() {
        assert!(
            stdout(&o)
                .lines()
                .any(|l| l.starts_with('p') && l.ends_with("/disk.img.zst")),
            "{}",
            stdout(&o)
        );
    } else {
        let err = stderr(&o);
        assert!(
            err.contains("disk.img.zst")
                && (err.contains("FIFO") || err.contains("not a regular file")),
            "{err}"
        );
    }
}
