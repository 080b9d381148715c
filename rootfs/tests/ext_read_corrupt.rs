//! Hostile images: seeded random corruptions of the superblock, group descriptors, inode table,
//! extent headers and directory blocks of real images give Ok or Err, never a panic or a hang;
//! hand-made directory cycles, extent-tree loops and absurd sizes are refused.

mod ext_read_util;

use std::collections::BTreeMap;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ext_read_util::*;
use rootfs::ext::format::{GroupDesc, Inode, Superblock};
use rootfs::ext::{read_image, ExtError, ReadOptions};
use rootfs::{NodeKind, ReadAt};

/// An image with a few bytes patched, without copying it.
struct Patched {
    base: Arc<Vec<u8>>,
    patches: BTreeMap<u64, u8>,
}

impl ReadAt for Patched {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.base.read_at(offset, buf)?;
        for (&off, &b) in self.patches.range(offset..offset + n as u64) {
            buf[(off - offset) as usize] = b;
        }
        Ok(n)
    }
    fn len(&self) -> u64 {
        self.base.len() as u64
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Byte ranges worth corrupting: superblock, descriptor block, the first inodes of group 0
/// (and their i_block extent headers), and the blocks of the given directories.
fn regions(img: &Path, data: &[u8], dirs: &[&str]) -> Vec<(String, u64, u64)> {
    let sb = Superblock::parse(&data[1024..2048]).unwrap();
    let bs = u64::from(sb.block_size().unwrap());
    let gdt = (if sb.first_data_block == 0 && bs == 1024 {
        1
    } else {
        u64::from(sb.first_data_block)
    } + 1)
        * bs;
    let gd = GroupDesc::parse(&data[gdt as usize..], usize::from(sb.desc_size())).unwrap();
    let isz = u64::from(sb.inode_size());
    let itable = gd.inode_table() * bs;
    let mut r = vec![
        ("superblock".to_string(), 1024, 1024),
        ("group descriptors".to_string(), gdt, bs),
        ("inode table".to_string(), itable, 64 * isz),
    ];
    for ino in [2u64, 11, 12, 13, 14, 15, 16] {
        let off = itable + (ino - 1) * isz;
        let inode = Inode::parse(&data[off as usize..(off + isz) as usize]).unwrap();
        if inode.mode != 0 {
            r.push((format!("inode {ino} i_block"), off + 0x28, 60));
        }
    }
    for d in dirs {
        let out = run(Command::new("debugfs")
            .arg("-R")
            .arg(format!("blocks {d}"))
            .arg(img));
        for b in out.split_whitespace().take(8) {
            let b: u64 = b.parse().unwrap();
            r.push((format!("directory {d} block {b}"), b * bs, bs));
        }
    }
    r
}

/// Read the image and everything in it; returns whether the read succeeded.
fn read_all(src: Arc<dyn ReadAt>) -> Result<(), ExtError> {
    let image = read_image(src, &ReadOptions::default())?;
    let tree = &image.tree;
    let mut budget: u64 = 8 << 20;
    tree.walk(|_, id| {
        if let NodeKind::Regular(c) = &tree.node(id).kind {
            if budget == 0 {
                return;
            }
            if let Ok(mut rd) = c.reader() {
                let mut buf = Vec::new();
                let _ = (&mut rd).take(budget.min(256 * 1024)).read_to_end(&mut buf);
                budget = budget.saturating_sub(buf.len() as u64 + 1);
            }
        }
    });
    Ok(())
}

fn sweep(img: &Path, dirs: &[&str], rounds: u64, seed: u64) {
    let data = Arc::new(std::fs::read(img).unwrap());
    let regions = regions(img, &data, dirs);
    let mut rng = Rng(seed);
    let (mut ok, mut err) = (0, 0);
    for round in 0..rounds {
        let (name, start, len) = &regions[rng.below(regions.len() as u64) as usize];
        let mut patches = BTreeMap::new();
        for _ in 0..1 + rng.below(6) {
            let off = start + rng.below(*len);
            let byte = match rng.below(3) {
                0 => 0xFF,
                1 => 0,
                _ => rng.next() as u8,
            };
            patches.insert(off, byte);
        }
        let src: Arc<dyn ReadAt> = Arc::new(Patched {
            base: data.clone(),
            patches: patches.clone(),
        });
        let t = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| read_all(src)));
        let took = t.elapsed();
        match result {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => {
                assert!(!e.to_string().is_empty());
                err += 1
            }
            Err(_) => panic!(
                "{}: round {round} ({name}, patches {patches:?}) panicked",
                img.display()
            ),
        }
        assert!(
            took < Duration::from_secs(20),
            "{}: round {round} ({name}) took {took:?}",
            img.display()
        );
    }
    eprintln!(
        "{}: {rounds} corruptions: {ok} read, {err} refused",
        img.display()
    );
    assert!(err > 0, "some corruptions must be detected");
}

#[test]
fn corrupted_ext4_csum_image() {
    let work = tempfile::tempdir().unwrap();
    let img = unpack("test_disk1.bin", work.path());
    sweep(
        &img,
        &["/", "/medium_dir", "/big_dir"],
        40,
        0x9E37_79B9_7F4A_7C15,
    );
}

#[test]
fn corrupted_ext2_triple_indirect_image() {
    let work = tempfile::tempdir().unwrap();
    let img = unpack("test_disk_ext2.bin", work.path());
    sweep(&img, &["/"], 80, 0xD1B5_4A32_D192_ED03);
}

#[test]
fn corrupted_ext3_and_journal_images() {
    let work = tempfile::tempdir().unwrap();
    let img = unpack("test_disk_ext3.bin", work.path());
    sweep(&img, &["/", "/medium_dir"], 60, 0xABCD_EF01_2345_6789);
    let img = unpack("test_disk_4k_block_journal.bin", work.path());
    sweep(&img, &["/"], 60, 0x1234_5678_9ABC_DEF1);
}

fn small_image(work: &Path, args: &[&str]) -> std::path::PathBuf {
    let src = work.join("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("a/file"), vec![1u8; 20000]).unwrap();
    for i in 0..300 {
        std::fs::write(src.join(format!("a/b/f{i}")), b"x").unwrap();
    }
    let img = work.join("small.img");
    let out = Command::new("mke2fs")
        .args(["-q", "-F"])
        .args(args)
        .arg("-d")
        .arg(&src)
        .arg(&img)
        .arg("8M")
        .output()
        .expect("mke2fs must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    img
}

#[test]
fn corrupted_mke2fs_images() {
    let work = tempfile::tempdir().unwrap();
    for (i, args) in [
        &["-t", "ext4", "-O", "metadata_csum,64bit,inline_data"][..],
        &["-t", "ext2", "-b", "1024", "-I", "128"],
    ]
    .iter()
    .enumerate()
    {
        let img = small_image(work.path(), args);
        sweep(&img, &["/", "/a", "/a/b"], 150, 0x5EED_0000 + i as u64);
    }
}

/// Patch `data` at `off` with `bytes`.
fn put(data: &mut [u8], off: u64, bytes: &[u8]) {
    data[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
}

#[test]
fn directory_cycles_extent_loops_and_absurd_sizes_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let img = small_image(work.path(), &["-t", "ext4", "-O", "^metadata_csum"]);
    let data = std::fs::read(&img).unwrap();
    let sb = Superblock::parse(&data[1024..2048]).unwrap();
    let bs = u64::from(sb.block_size().unwrap());
    let isz = u64::from(sb.inode_size());
    let inode_off = |ino: u64| {
        let g = (ino - 1) / u64::from(sb.inodes_per_group);
        let gdt = (u64::from(sb.first_data_block) + 1) * bs + g * u64::from(sb.desc_size());
        let gd = GroupDesc::parse(&data[gdt as usize..], usize::from(sb.desc_size())).unwrap();
        gd.inode_table() * bs + ((ino - 1) % u64::from(sb.inodes_per_group)) * isz
    };
    let ino_of = |path: &str| -> u64 {
        let out = run(Command::new("debugfs")
            .arg("-R")
            .arg(format!("stat {path}"))
            .arg(&img));
        out.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let read_patched = |d: Vec<u8>| read_image(Arc::new(d), &ReadOptions::default());

    // 1. A directory entry of /a/b renamed to point at /a: a cycle.
    let b_blocks = run(Command::new("debugfs")
        .arg("-R")
        .arg("blocks /a/b")
        .arg(&img));
    let b_blk: u64 = b_blocks.split_whitespace().next().unwrap().parse().unwrap();
    let a_ino = ino_of("/a") as u32;
    let mut d = data.clone();
    // First real entry after "." (12 bytes) and ".." (12 bytes) in the first block.
    put(&mut d, b_blk * bs + 24, &a_ino.to_le_bytes());
    match read_patched(d) {
        Err(ExtError::DirectoryCycle { ino, .. }) => assert_eq!(ino, u64::from(a_ino)),
        other => panic!("expected a directory cycle, got {other:?}"),
    }

    // 2. An extent tree whose interior node points at itself.
    let f = ino_of("/a/file");
    let loop_blk = b_blk + 1000; // a free block inside the filesystem
    let mut d = data.clone();
    let off = inode_off(f);
    // Root in i_block: depth 2, one index -> loop_blk.
    let mut root = Vec::new();
    for v in [0xF30Au16, 1, 4, 2] {
        root.extend_from_slice(&v.to_le_bytes());
    }
    root.extend_from_slice(&0u32.to_le_bytes());
    root.extend_from_slice(&0u32.to_le_bytes());
    root.extend_from_slice(&(loop_blk as u32).to_le_bytes());
    root.extend_from_slice(&[0u8; 4]);
    put(&mut d, off + 0x28, &root);
    // loop_blk: depth 1, one index -> loop_blk again.
    let mut node = Vec::new();
    for v in [0xF30Au16, 1, ((bs - 12) / 12) as u16, 1] {
        node.extend_from_slice(&v.to_le_bytes());
    }
    node.extend_from_slice(&0u32.to_le_bytes());
    node.extend_from_slice(&0u32.to_le_bytes());
    node.extend_from_slice(&(loop_blk as u32).to_le_bytes());
    node.extend_from_slice(&[0u8; 4]);
    put(&mut d, loop_blk * bs, &node);
    let e = read_patched(d).expect_err("extent loop");
    assert!(
        e.to_string().contains("reached twice") || e.to_string().contains("depth"),
        "{e}"
    );

    // 3. An absurd file size.
    let mut d = data.clone();
    put(&mut d, inode_off(f) + 0x6C, &0xFFFF_FFFFu32.to_le_bytes());
    let e = read_patched(d).expect_err("absurd size");
    assert!(e.to_string().contains("largest possible file"), "{e}");

    // 4. Extent tree deeper than 5.
    let mut d = data.clone();
    put(&mut d, inode_off(f) + 0x28 + 6, &9u16.to_le_bytes());
    let e = read_patched(d).expect_err("deep extent tree");
    assert!(e.to_string().contains("depth"), "{e}");

    // 5. A superblock claiming far more blocks than the image holds.
    let mut d = data.clone();
    put(&mut d, 1024 + 4, &0xFFFF_FFF0u32.to_le_bytes());
    assert!(read_patched(d).is_err());
}
