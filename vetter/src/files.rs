//! Every inode of the image: paths (hard links grouped), type, mode, owner, size, times, xattrs,
//! sha256 of regular files (hashed in parallel, bounded memory), and the file findings a reviewer
//! looks at first: setuid/setgid, capabilities, world-writable, devices outside /dev, unknown owners.

use rayon::prelude::*;
use rootfs::content::HashBudget;
use rootfs::{Device, FileType, NodeId, NodeKind, Timestamp, Tree};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

use crate::accounts::Ids;
use crate::caps::{self, FileCaps};
use crate::secrets::{self, Credential};
use crate::{Error, InspectOptions, Problem};

/// One inode.
#[derive(Clone, Debug, Serialize)]
pub struct FileEntry {
    /// Every path naming this inode, sorted (more than one for hard links).
    pub paths: Vec<String>,
    /// File type.
    #[serde(rename = "type")]
    pub file_type: FileType,
    /// Permission bits in octal, four digits (`4755`).
    pub mode: String,
    /// Owner uid.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Owner name from the image's /etc/passwd.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Group name from the image's /etc/group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Size (file length, symlink target length, 0 otherwise).
    pub size: u64,
    /// Modification time.
    pub mtime: Timestamp,
    /// Status change time.
    pub ctime: Timestamp,
    /// Access time.
    pub atime: Timestamp,
    /// Symlink target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Device numbers of device nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    /// Extended attributes: text values as text, others as `hex:...`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
    /// Decoded `security.capability`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<FileCaps>,
    /// sha256 of the contents (regular files), lowercase hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A file carrying capabilities.
#[derive(Clone, Debug, Serialize)]
pub struct CapFile {
    /// Path.
    pub path: String,
    /// Decoded capabilities (absent when the attribute is malformed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caps: Option<FileCaps>,
    /// Decoding error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A file whose owner or group the image does not know.
#[derive(Clone, Debug, Serialize)]
pub struct Unowned {
    /// Path.
    pub path: String,
    /// Owner uid.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// The uid is in the image's /etc/passwd.
    pub user_known: bool,
    /// The gid is in the image's /etc/group.
    pub group_known: bool,
}

/// A regular file that was not hashed, and why.
#[derive(Clone, Debug, Serialize)]
pub struct NotHashed {
    /// Path.
    pub path: String,
    /// Logical size.
    pub size: u64,
    /// Why: over the size limit, holes over the hole budget, extents mapping more than their
    /// source, or a read error.
    pub reason: String,
}

/// The files section of the inventory.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Files {
    /// Number of inodes reachable from the root.
    pub inodes: u64,
    /// Number of regular-file inodes.
    pub regular_files: u64,
    /// Sum of regular files' logical sizes.
    pub total_bytes: u64,
    /// Regular files hashed.
    pub hashed: u64,
    /// Inodes carrying a `security.selinux` label.
    pub selinux_labelled: u64,
    /// One entry per inode, ordered by first path (empty if disabled in the options).
    pub entries: Vec<FileEntry>,
    /// Paths of setuid files.
    pub setuid: Vec<String>,
    /// Paths of setgid files (regular files; setgid directories are not listed).
    pub setgid: Vec<String>,
    /// Files with `security.capability`.
    pub capabilities: Vec<CapFile>,
    /// World-writable files (not symlinks, not directories).
    pub world_writable: Vec<String>,
    /// World-writable directories without the sticky bit.
    pub world_writable_dirs_without_sticky: Vec<String>,
    /// Character and block devices outside /dev.
    pub devices_outside_dev: Vec<String>,
    /// Files owned by a uid or gid the image does not define.
    pub unknown_owner: Vec<Unowned>,
    /// Regular files not hashed.
    pub not_hashed: Vec<NotHashed>,
}

/// Result of [`scan`]: the files section plus what the same pass found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The files section.
    pub files: Files,
    /// Credentials found in file contents and by name.
    pub credentials: Vec<Credential>,
    /// Read errors.
    pub problems: Vec<Problem>,
    /// sha256 of every hashed regular file, by node.
    pub hashes: std::collections::HashMap<NodeId, String>,
}

fn xattr_text(v: &[u8]) -> String {
    let t = v.strip_suffix(&[0]).unwrap_or(v);
    match std::str::from_utf8(t) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.to_string(),
        _ => format!("hex:{}", hex::encode(v)),
    }
}

struct Hashed {
    /// Raw digest: hex is made once the entry is built (a million 64-byte strings held
    /// across the whole scan would cost as much as the tree).
    sha256: Option<[u8; 32]>,
    not_hashed: Option<String>,
    credentials: Vec<Credential>,
}

fn hash_one(
    tree: &Tree,
    id: NodeId,
    path: &str,
    opts: &InspectOptions,
    budget: &HashBudget,
    buf: &mut Vec<u8>,
) -> Hashed {
    let mut out = Hashed {
        sha256: None,
        not_hashed: None,
        credentials: Vec::new(),
    };
    let NodeKind::Regular(content) = &tree.node(id).kind else {
        return out;
    };
    if content.size() <= opts.scan_limit {
        // Small files are read whole, scanned for credentials and hashed from memory; their
        // holes come out of the same budget as hashing's.
        if let Err(e) = budget.admit(content) {
            out.not_hashed = Some(e.to_string());
            return out;
        }
        match content.read_to_vec(opts.scan_limit) {
            Ok(bytes) => {
                if !bytes.is_empty() {
                    // (Building the searchers costs more than the search: skip empty files.)
                    out.credentials = secrets::scan_bytes(path, &bytes);
                }
                out.sha256 = opts.hash.then(|| Sha256::digest(&bytes).into());
            }
            Err(e) => out.not_hashed = Some(format!("read error: {e}")),
        }
        return out;
    }
    if !opts.hash {
        return out;
    }
    if buf.is_empty() {
        buf.resize(256 << 10, 0);
    }
    match content.sha256(budget, buf) {
        Ok(h) => out.sha256 = Some(h),
        Err(e) => out.not_hashed = Some(e.to_string()),
    }
    out
}

/// Walk the tree once, describe every inode, hash and scan regular files in parallel.
///
/// Every path is held as a string, so a path longer than [`InspectOptions::max_path_bytes`]
/// stops the inspection ([`Error::PathTooLong`]): a tree 100,000 directories deep (a few hundred
/// bytes of compressed tar) would otherwise hold 10^10 bytes of paths. Hashing stays within
/// [`InspectOptions::hash_limit`] per file and [`InspectOptions::hash_holes`] of holes over the
/// whole image; files over a budget are listed in [`Files::not_hashed`].
pub fn scan(tree: &Tree, opts: &InspectOptions, ids: &Ids) -> Result<Scan, Error> {
    // Group paths by inode in walk order.
    let mut slot_of: Vec<u32> = vec![u32::MAX; tree.node_slots()];
    let mut groups: Vec<(NodeId, Vec<String>)> = Vec::new();
    let mut too_long: Option<Error> = None;
    tree.walk(|path, id| {
        if too_long.is_some() {
            return;
        }
        if path.len() > opts.max_path_bytes {
            let shown = &path[..path.len().min(200)];
            too_long = Some(Error::PathTooLong {
                start: crate::util::show(shown),
                len: path.len(),
                limit: opts.max_path_bytes,
            });
            return;
        }
        let p = crate::util::show(path);
        match slot_of.get_mut(id.0 as usize) {
            Some(s) if *s == u32::MAX => {
                *s = groups.len() as u32;
                groups.push((id, vec![p]));
            }
            Some(s) => {
                if let Some(g) = groups.get_mut(*s as usize) {
                    g.1.push(p);
                }
            }
            None => {}
        }
    });
    if let Some(e) = too_long {
        return Err(e);
    }
    let budget = HashBudget::new(opts.hash_limit, opts.hash_holes);
    let hashed: Vec<Hashed> = groups
        .par_iter()
        .map_init(Vec::new, |buf, (id, paths)| {
            hash_one(
                tree,
                *id,
                paths.first().map(String::as_str).unwrap_or("/"),
                opts,
                &budget,
                buf,
            )
        })
        .collect();

    let mut out = Scan::default();
    let f = &mut out.files;
    for ((id, mut paths), h) in groups.into_iter().zip(hashed) {
        paths.sort();
        let node = tree.node(id);
        let first = paths.first().cloned().unwrap_or_default();
        let ft = node.file_type();
        let perm = node.meta.perm;
        f.inodes += 1;
        if ft == FileType::Regular {
            f.regular_files += 1;
            f.total_bytes = f.total_bytes.saturating_add(node.size());
            if h.sha256.is_some() {
                f.hashed += 1;
            }
        }
        if let Some(reason) = &h.not_hashed {
            if reason.starts_with("read error") {
                out.problems.push(Problem {
                    path: first.clone(),
                    message: reason.clone(),
                });
            }
            f.not_hashed.push(NotHashed {
                path: first.clone(),
                size: node.size(),
                reason: reason.clone(),
            });
        }
        out.credentials.extend(h.credentials);
        for p in &paths {
            out.credentials.extend(secrets::by_name(p, ft));
        }
        if ft == FileType::Regular && perm & 0o4000 != 0 {
            f.setuid.extend(paths.iter().cloned());
        }
        if ft == FileType::Regular && perm & 0o2000 != 0 {
            f.setgid.extend(paths.iter().cloned());
        }
        if perm & 0o002 != 0 {
            match ft {
                FileType::Directory if perm & 0o1000 == 0 => {
                    f.world_writable_dirs_without_sticky.push(first.clone())
                }
                FileType::Directory | FileType::Symlink => {}
                _ => f.world_writable.extend(paths.iter().cloned()),
            }
        }
        let device = match &node.kind {
            NodeKind::CharDevice(d) | NodeKind::BlockDevice(d) => {
                for p in &paths {
                    if !(p.starts_with("/dev/") || p == "/dev") {
                        f.devices_outside_dev.push(p.clone());
                    }
                }
                Some(*d)
            }
            _ => None,
        };
        let user = ids.users.get(&node.meta.uid).cloned();
        let group = ids.groups.get(&node.meta.gid).cloned();
        if (ids.have_passwd && user.is_none()) || (ids.have_group && group.is_none()) {
            f.unknown_owner.push(Unowned {
                path: first.clone(),
                uid: node.meta.uid,
                gid: node.meta.gid,
                user_known: user.is_some(),
                group_known: group.is_some(),
            });
        }
        let mut capabilities = None;
        if let Some(v) = node.meta.xattrs.get(b"security.capability".as_slice()) {
            match caps::decode(v) {
                Ok(c) => {
                    capabilities = Some(c.clone());
                    f.capabilities.push(CapFile {
                        path: first.clone(),
                        caps: Some(c),
                        error: None,
                    });
                }
                Err(e) => f.capabilities.push(CapFile {
                    path: first.clone(),
                    caps: None,
                    error: Some(e.to_string()),
                }),
            }
        }
        if node
            .meta
            .xattrs
            .contains_key(b"security.selinux".as_slice())
        {
            f.selinux_labelled += 1;
        }
        let sha256 = h.sha256.map(hex::encode);
        if let Some(h) = &sha256 {
            out.hashes.insert(id, h.clone());
        }
        if opts.list_files {
            f.entries.push(FileEntry {
                paths,
                file_type: ft,
                mode: format!("{:04o}", perm & 0o7777),
                uid: node.meta.uid,
                gid: node.meta.gid,
                user,
                group,
                size: node.size(),
                mtime: node.meta.mtime,
                ctime: node.meta.ctime,
                atime: node.meta.atime,
                target: match &node.kind {
                    NodeKind::Symlink(t) => Some(crate::util::show(t)),
                    _ => None,
                },
                device,
                xattrs: node
                    .meta
                    .xattrs
                    .iter()
                    .map(|(k, v)| (crate::util::show(k), xattr_text(v)))
                    .collect(),
                capabilities,
                sha256,
            });
        }
    }
    f.setuid.sort();
    f.setgid.sort();
    f.world_writable.sort();
    f.devices_outside_dev.sort();
    out.credentials.sort();
    out.credentials.dedup();
    Ok(out)
}
