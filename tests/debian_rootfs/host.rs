//! The debootstrap'd tree as the host kernel sees it (`lstat`, `readlink`, `llistxattr`), read
//! with std and the `xattr` crate only: an expectation independent of `rootfs::dir::read_dir`.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

/// File types, named as debugfs `stat` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Regular,
    Directory,
    Symlink,
    Char,
    Block,
    Fifo,
    Socket,
}

impl Kind {
    /// From the `S_IFMT` bits of a mode.
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Some(match mode & 0o170000 {
            0o100000 => Kind::Regular,
            0o040000 => Kind::Directory,
            0o120000 => Kind::Symlink,
            0o020000 => Kind::Char,
            0o060000 => Kind::Block,
            0o010000 => Kind::Fifo,
            0o140000 => Kind::Socket,
            _ => return None,
        })
    }
}

/// One path of the host tree.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Path inside the image: `/` for the root, `/etc/passwd`, ...
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky.
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    /// `st_size` (regular files and symlinks; 0 for the rest but directories, which are not compared).
    pub size: u64,
    /// Symlink target.
    pub target: Option<Vec<u8>>,
    /// Device major and minor of device nodes.
    pub rdev: Option<(u32, u32)>,
    /// Extended attributes (as `llistxattr`/`lgetxattr` return them).
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// (st_dev, st_ino): equal keys are hard links.
    pub key: (u64, u64),
}

/// glibc's `gnu_dev_major` / `gnu_dev_minor`.
pub fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

fn entry(host: &Path, path: Vec<u8>) -> Entry {
    let md =
        std::fs::symlink_metadata(host).unwrap_or_else(|e| panic!("lstat {}: {e}", host.display()));
    let kind = Kind::from_mode(md.mode())
        .unwrap_or_else(|| panic!("{}: unknown type {:o}", host.display(), md.mode()));
    let ft = md.file_type();
    let target = ft
        .is_symlink()
        .then(|| {
            std::fs::read_link(host).unwrap_or_else(|e| panic!("readlink {}: {e}", host.display()))
        })
        .map(|t| t.as_os_str().as_bytes().to_vec());
    let rdev = (ft.is_char_device() || ft.is_block_device()).then(|| split_dev(md.rdev()));
    let mut xattrs = BTreeMap::new();
    let names = xattr::list(host).unwrap_or_else(|e| panic!("llistxattr {}: {e}", host.display()));
    for n in names {
        let v = xattr::get(host, &n)
            .unwrap_or_else(|e| panic!("lgetxattr {} {n:?}: {e}", host.display()));
        xattrs.insert(n.as_bytes().to_vec(), v.unwrap_or_default());
    }
    Entry {
        path,
        kind,
        perm: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        size: if matches!(kind, Kind::Regular | Kind::Symlink) {
            md.size()
        } else {
            0
        },
        target,
        rdev,
        xattrs,
        key: (md.dev(), md.ino()),
    }
}

/// Every path under `root` (the root first, then depth-first in byte order of names).
pub fn walk(root: &Path) -> Vec<Entry> {
    let mut out = vec![entry(root, b"/".to_vec())];
    let mut stack: Vec<(PathBuf, Vec<u8>)> = vec![(root.to_path_buf(), Vec::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let mut names: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .map(|d| {
                d.unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
                    .file_name()
                    .as_bytes()
                    .to_vec()
            })
            .collect();
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let host = dir.join(OsStr::from_bytes(&name));
            let mut path = prefix.clone();
            path.push(b'/');
            path.extend_from_slice(&name);
            let e = entry(&host, path.clone());
            if e.kind == Kind::Directory {
                subdirs.push((host, path));
            }
            out.push(e);
        }
        stack.extend(subdirs.into_iter().rev());
    }
    out
}

/// sha256 (lowercase hex) of a host file.
pub fn sha256_file(path: &Path) -> String {
    let mut f =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    hex::encode(h.finalize())
}

/// sha256 of every regular file of `entries`, by image path, hashed in parallel; `base`
/// replaces the tree's root (e.g. a directory debugfs `rdump`ed the image into).
pub fn sha256_regular(entries: &[Entry], base: &Path) -> HashMap<Vec<u8>, String> {
    entries
        .par_iter()
        .filter(|e| e.kind == Kind::Regular)
        .map(|e| {
            let p = base.join(OsStr::from_bytes(&e.path[1..]));
            (e.path.clone(), sha256_file(&p))
        })
        .collect()
}

/// Show a byte path.
pub fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}
