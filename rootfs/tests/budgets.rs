//! Bounded work at the library level: regular-file-only opens, the tar spool budget, hashing
//! budgets for sparse contents, and trees far deeper than any stack.

mod tar_util;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use rootfs::content::{open_regular, FileSource, HashBudget, HashError};
use rootfs::tar::{open_archive, read_tar, TarError, TarOptions};
use rootfs::{Content, Extent, Metadata, Node, NodeKind, ReadAt, Source, Timestamp, Tree};
use sha2::{Digest, Sha256};
use tar_util::header;

fn meta() -> Metadata {
    Metadata::new(0o755, 0, 0, Timestamp::from_secs(1))
}

#[test]
fn fifos_devices_and_final_symlinks_are_not_opened_as_files() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("disk.img.zst");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    // A blocking open of a FIFO waits for a writer for ever; these return at once.
    let e = FileSource::open(&fifo).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("is a FIFO"), "{e}");
    let e = open_regular(std::path::Path::new("/dev/null"), true).unwrap_err();
    assert!(e.to_string().contains("character device"), "{e}");
    let e = open_regular(tmp.path(), true).unwrap_err();
    assert!(e.to_string().contains("directory"), "{e}");

    let file = tmp.path().join("f");
    std::fs::write(&file, b"data").unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    assert_eq!(FileSource::open(&link).unwrap().len(), 4);
    let e = FileSource::open_nofollow(&link).unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    // Contents referenced by path (directory reader) are read without following a link
    // swapped in for the file.
    let c = Content::from_path(&link, 4);
    assert!(c.reader().is_err());
    assert!(Content::from_path(&file, 4).reader().is_ok());
    // A tar archive given as a FIFO is refused the same way.
    let e = open_archive(&fifo, &TarOptions::default()).err().unwrap();
    assert!(e.to_string().contains("is a FIFO"), "{e}");
}

/// A tar of one member of `size` zero bytes, compressed by the real `zstd`.
fn zstd_tar_of_zeros(path: &std::path::Path, size: u64) {
    let out = std::fs::File::create(path).unwrap();
    let mut z = Command::new("zstd")
        .args(["-q", "-3", "-c"])
        .stdin(Stdio::piped())
        .stdout(out)
        .spawn()
        .expect("zstd (Debian package zstd)");
    {
        let mut w = z.stdin.take().unwrap();
        w.write_all(&header(b"zeros", b'0', size, b"")).unwrap();
        let zeros = vec![0u8; 1 << 16];
        let mut left = size.div_ceil(512) * 512 + 1024;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            w.write_all(&zeros[..n]).unwrap();
            left -= n as u64;
        }
    }
    assert!(z.wait().unwrap().success());
}

#[test]
fn the_spool_stops_at_its_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let bomb = tmp.path().join("bomb.tar.zst");
    zstd_tar_of_zeros(&bomb, 8 << 20);
    let compressed = std::fs::metadata(&bomb).unwrap().len();
    assert!(compressed < 8 << 10, "{compressed}");
    let spool = tmp.path().join("spool");
    std::fs::create_dir(&spool).unwrap();

    // Ratio budget: 100 times the compressed size, with a floor lower than that.
    let opts = TarOptions {
        spool_dir: Some(spool.clone()),
        spool_floor: 4096,
        ..TarOptions::default()
    };
    let budget = opts.spool_budget(compressed);
    assert_eq!(budget, compressed * 100);
    match open_archive(&bomb, &opts) {
        Err(TarError::Decompress { at, what, .. }) => {
            assert!(at > budget && at <= budget + (1 << 17), "{at} vs {budget}");
            assert!(
                what.contains(&format!("spool budget of {budget} bytes")),
                "{what}"
            );
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("the bomb was spooled whole"),
    }
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);

    // The floor lets small archives expand; an explicit cap overrides both.
    let roomy = TarOptions {
        spool_dir: Some(spool.clone()),
        spool_floor: 16 << 20,
        ..TarOptions::default()
    };
    let (src, _) = open_archive(&bomb, &roomy).unwrap();
    assert_eq!(src.len(), 512 + (8 << 20) + 1024);
    let (tree, _) = read_tar(src, &roomy).unwrap();
    assert_eq!(tree.node(tree.lookup(b"/zeros").unwrap()).size(), 8 << 20);
    let capped = TarOptions {
        spool_dir: Some(spool),
        spool_floor: 16 << 20,
        max_decompressed_bytes: Some(1 << 20),
        ..TarOptions::default()
    };
    assert!(matches!(
        open_archive(&bomb, &capped),
        Err(TarError::Decompress { .. })
    ));
}

fn sparse(size: u64, data: &'static [u8], at: u64) -> Content {
    let src: Arc<dyn ReadAt> = Arc::new(data.to_vec());
    Content::from_extents(
        Source::Shared(src),
        size,
        vec![Extent {
            logical: at,
            physical: 0,
            len: data.len() as u64,
        }],
    )
    .unwrap()
}

#[test]
fn hashing_holes_comes_out_of_one_budget() {
    let mut buf = vec![0u8; 1 << 16];
    let budget = HashBudget::new(1 << 40, 3 << 20);
    // A 1 MiB sparse file: its holes are hashed as zeros, and the digest is the real one.
    let c = sparse(1 << 20, b"abc", 4096);
    let mut want = vec![0u8; 1 << 20];
    want[4096..4099].copy_from_slice(b"abc");
    let got = c.sha256(&budget, &mut buf).unwrap();
    assert_eq!(got, <[u8; 32]>::from(Sha256::digest(&want)));
    assert_eq!(budget.holes_left(), (3 << 20) - ((1 << 20) - 3));
    // 1 TiB of holes: refused before any read, and the budget is untouched.
    let huge = Content::from_extents(Source::None, 1 << 40, Vec::new()).unwrap();
    match huge.sha256(&budget, &mut buf) {
        Err(HashError::NotHashed(why)) => {
            assert!(why.contains("budget for hashing holes"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(budget.holes_left(), (3 << 20) - ((1 << 20) - 3));
    // Two more 1 MiB sparse files: the first fits, the second no longer does.
    assert!(sparse(1 << 20, b"x", 0).sha256(&budget, &mut buf).is_ok());
    assert!(matches!(
        sparse(2 << 20, b"x", 0).sha256(&budget, &mut buf),
        Err(HashError::NotHashed(_))
    ));
    // Dense files cost no hole budget.
    let dense = Content::from_bytes(b"dense".to_vec());
    assert_eq!(
        dense.sha256(&budget, &mut buf).unwrap(),
        <[u8; 32]>::from(Sha256::digest(b"dense"))
    );
    // Over the per-file size limit.
    let small = HashBudget::new(4, 1 << 30);
    assert!(matches!(
        dense.sha256(&small, &mut buf),
        Err(HashError::NotHashed(w)) if w.contains("larger than the 4 byte")
    ));
}

#[test]
fn extents_mapping_more_than_their_source_are_not_hashed() {
    // 4096 extents of 1 MiB all pointing at the same 1 MiB: 4 GiB of "stored" bytes from a
    // 1 MiB source (a crafted ext file can map one block many times).
    let src: Arc<dyn ReadAt> = Arc::new(vec![7u8; 1 << 20]);
    let extents = (0..4096u64)
        .map(|i| Extent {
            logical: i << 20,
            physical: 0,
            len: 1 << 20,
        })
        .collect();
    let c = Content::from_extents(Source::Shared(src), 4096 << 20, extents).unwrap();
    let budget = HashBudget::default();
    match c.sha256(&budget, &mut [0u8; 4096]) {
        Err(HashError::NotHashed(why)) => assert!(why.contains("source holds only"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_tree_200000_directories_deep_resolves_without_recursion() {
    // Run on a thread with a small stack: a recursive search would overflow it.
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(|| {
            let depth = 200_000;
            let path: Vec<u8> = vec![&b"d"[..]; depth].join(&b'/');
            let mut t = Tree::default();
            let file = [path.as_slice(), b"/f"].concat();
            t.insert(
                &file,
                Node::new(
                    NodeKind::Regular(Content::from_bytes(b"x".to_vec())),
                    meta(),
                ),
                &meta(),
            )
            .unwrap();
            let deepest = t.lookup(&path).unwrap();
            // `..` from the deepest directory needs the chain of directories above it.
            let f = t.resolve_from(deepest, b"../d/f", true).unwrap();
            assert_eq!(t.lookup(&file), Some(f));
            // A symlink at the bottom pointing up, used as a parent by an insert.
            let up = [path.as_slice(), b"/up"].concat();
            t.insert(
                &up,
                Node::new(NodeKind::Symlink(b"..".to_vec()), meta()),
                &meta(),
            )
            .unwrap();
            let via = [path.as_slice(), b"/up/g"].concat();
            let g = t
                .insert(&via, Node::new(NodeKind::Fifo, meta()), &meta())
                .unwrap();
            let parent: Vec<u8> = vec![&b"d"[..]; depth - 1].join(&b'/');
            assert_eq!(t.lookup(&[parent.as_slice(), b"/g"].concat()), Some(g));
            // The walk and link counts are iterative too.
            assert_eq!(t.path_count(), depth + 4);
            assert_eq!(t.link_counts()[deepest.0 as usize], 2);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn symlink_targets_longer_than_path_max_are_not_followed() {
    let mut t = Tree::default();
    let long = vec![b'a'; 5000];
    t.insert(b"/l", Node::new(NodeKind::Symlink(long), meta()), &meta())
        .unwrap();
    let e = t.resolve(b"/l", true).unwrap_err();
    assert!(e.to_string().contains("longer than 4096"), "{e}");
    assert!(t.resolve(b"/l", false).is_ok());
}
