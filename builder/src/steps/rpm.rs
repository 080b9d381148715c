//! The `rpm` step: install .rpm packages into the tree without root and without the host's rpm.
//!
//! For each package: pkgdb reads the lead, headers and cpio payload (gzip, bzip2, xz, lzma,
//! zstd); every entry goes into the tree with the header's mode, owner and group (names
//! resolved against the image's /etc/passwd and /etc/group, as rpm does; unknown names fall back
//! to root with a note, as rpm does), mtime from the header, and file capabilities
//! (`FILECAPS`) as `security.capability` xattrs (VFS_CAP_REVISION_2). `%ghost` files are not
//! laid down. The install header (signature digests merged, INSTALLTIME = build epoch) is
//! registered in the image's rpm database in the format it already uses: `rpmdb.sqlite` (via
//! SQLite on a temporary copy) or Berkeley DB `Packages`. Scriptlets are never run; they are
//! listed in the report.

use std::collections::HashMap;
use std::io::Read;

use pkgdb::rpm::{Header, RpmPackage};
use pkgdb::rpmdb::bdb_index;
use pkgdb::Package;
use rootfs::{Content, Device, Metadata, Node, NodeKind, Timestamp, Tree};
use sha2::{Digest, Sha256};

use super::accounts::Accounts;
use super::{
    dir_meta, join, record_digest, source_err, StepContext, StepError, StepReport, StepResult,
};
use crate::inspect;

/// Largest file of a package held in memory; bigger ones are refused (a wafer recipe installs
/// service packages, not multi-GB blobs).
pub const MAX_FILE: u64 = 1 << 30;
/// Most payload entries accepted per package.
pub const MAX_ENTRIES: usize = 500_000;

/// Scriptlet tags: (script tag, program tag, name).
const SCRIPTLETS: &[(u32, u32, &str)] = &[
    (1151, 1153, "%pretrans"),
    (1023, 1085, "%pre"),
    (1024, 1086, "%post"),
    (1025, 1087, "%preun"),
    (1026, 1088, "%postun"),
    (1152, 1154, "%posttrans"),
    (1079, 1091, "%verifyscript"),
];
/// TRIGGERSCRIPTS, FILETRIGGERSCRIPTS, TRANSFILETRIGGERSCRIPTS.
const TRIGGERS: &[(u32, &str)] = &[
    (1065, "%trigger"),
    (5066, "%filetrigger"),
    (5076, "%transfiletrigger"),
];

/// Turn `cap_to_text` output (`cap_net_raw=ep`, `cap_a,cap_b+ep`, `= cap_x+ep`) into the
/// `security.capability` xattr value (struct vfs_cap_data, revision 2, little endian).
pub fn caps_xattr(text: &str) -> Result<Vec<u8>, String> {
    let sets = rootfs::caps::parse_text(text).map_err(|e| e.to_string())?;
    Ok(rootfs::caps::encode_v2(&sets))
}

/// The scriptlets a header carries, as "name-evr: %post (/bin/sh)".
pub fn scriptlets(h: &Header, label: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (script, prog, name) in SCRIPTLETS {
        if h.has(*script) || h.has(*prog) {
            let interp = h
                .strings(*prog)
                .ok()
                .and_then(|v| v.into_iter().next())
                .or_else(|| h.string(*prog))
                .unwrap_or_else(|| "/bin/sh".into());
            out.push(format!("{label}: {name} ({interp})"));
        }
    }
    for (t, name) in TRIGGERS {
        let n = h.strings(*t).map(|v| v.len()).unwrap_or(0);
        if n > 0 {
            out.push(format!("{label}: {name} x{n}"));
        }
    }
    out
}

fn evr(p: &pkgdb::Package) -> String {
    match p.epoch {
        Some(e) => format!("{e}:{}-{}", p.version, p.release),
        None => format!("{}-{}", p.version, p.release),
    }
}

/// Packages yum and dnf install side by side instead of upgrading (yum's default
/// `installonlypkgs`, plus anything providing `installonlypkg(...)`, as dnf decides).
pub const INSTALL_ONLY: &[&str] = &[
    "kernel",
    "kernel-bigmem",
    "kernel-enterprise",
    "kernel-smp",
    "kernel-modules",
    "kernel-debug",
    "kernel-unsupported",
    "kernel-source",
    "kernel-devel",
    "kernel-PAE",
    "kernel-PAE-debug",
    "kernel-xen",
    "kernel-xenU",
    "kernel-kdump",
    "kernel-core",
    "kernel-modules-extra",
    "kernel-uek",
    "installonlypkg",
];

/// Whether a package is installed side by side with its other versions (kernels).
pub fn is_install_only(h: &Header, name: &str) -> bool {
    INSTALL_ONLY.contains(&name)
        || h.strings(pkgdb::rpm::header::tag::PROVIDENAME)
            .unwrap_or_default()
            .iter()
            .any(|p| p.starts_with("installonlypkg("))
}

/// Where an installed package's header lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// In the image's database, under this record number.
    Db(u32),
    /// Installed earlier in this step: index into the new headers.
    New(usize),
}

/// A package the image holds (or will hold once this step registers it).
struct Held {
    pkg: pkgdb::Package,
    origin: Origin,
}

/// Whether `a` and `b` are the same package for `rpm -U` (same name; same arch, or one of them
/// noarch), rather than a multilib sibling.
fn same_slot(a: &pkgdb::Package, b: &pkgdb::Package) -> bool {
    let arch = |p: &pkgdb::Package| p.arch.clone().unwrap_or_default();
    a.name == b.name
        && (arch(a) == arch(b) || arch(a) == "noarch" || arch(b) == "noarch" || arch(a).is_empty())
}

/// Install every package (upgrading installed versions as `rpm -U` does, kernels side by side),
/// then update the image's rpm database: replaced headers out, new ones in.
pub fn install(
    tree: &mut Tree,
    ctx: &StepContext,
    packages: &[String],
    allow_downgrade: bool,
    r: &mut StepReport,
) -> StepResult {
    // Every package must be a regular file beneath the recipe's folder before anything else.
    for rel in packages {
        ctx.root.open_file(rel).map_err(source_err)?;
    }
    let dbdir = inspect::rpmdb_dir(tree).ok_or_else(|| {
        StepError::new("the image has no rpm database (/var/lib/rpm or /usr/lib/sysimage/rpm)")
    })?;
    let src = inspect::TreeDb {
        tree,
        dir: dbdir.to_string(),
    };
    let mut held: Vec<Held> = pkgdb::rpmdb::read_packages(&src)
        .map_err(|e| StepError::new(format!("{dbdir}: {e}")))?
        .into_iter()
        .filter(|p| !p.is_gpg_pubkey)
        .filter_map(|p| {
            let origin = Origin::Db(p.db_id?);
            Some(Held { pkg: p, origin })
        })
        .collect();
    let mut headers: Vec<Option<Header>> = Vec::new();
    let mut erase: Vec<u32> = Vec::new();
    for rel in packages {
        let bad = |e: &dyn std::fmt::Display| StepError::new(format!("package '{rel}': {e}"));
        // Opened beneath the recipe's folder (a regular file only), hashed and parsed through
        // the same descriptor: never read into memory whole, never reopened by name.
        let (mut file, _) = ctx.root.open_file(rel).map_err(source_err)?;
        let sha = hex::encode(crate::sha256_read(&mut &file).map_err(|e| bad(&e))?);
        record_digest(ctx, rel, sha.clone());
        std::io::Seek::rewind(&mut file).map_err(|e| bad(&e))?;
        let pkg = RpmPackage::open(std::io::BufReader::with_capacity(1 << 16, file))
            .map_err(|e| bad(&e))?;
        let info = pkg.package().map_err(|e| bad(&e))?;
        let install_only = is_install_only(&pkg.header, &info.name);
        // What this package replaces.
        let mut replaced = Vec::new();
        for (i, h) in held.iter().enumerate() {
            if !same_slot(&h.pkg, &info) {
                continue;
            }
            let order = h.pkg.evr().compare(&info.evr());
            if order == std::cmp::Ordering::Equal {
                return Err(bad(&format!(
                    "{} {} is already installed in the image",
                    info.name,
                    evr(&h.pkg)
                )));
            }
            if install_only {
                continue;
            }
            if order == std::cmp::Ordering::Greater && !allow_downgrade {
                return Err(bad(&format!(
                    "would downgrade {} from {} to {} (set allow_downgrade = true in the step to allow it)",
                    info.name,
                    evr(&h.pkg),
                    evr(&info)
                )));
            }
            replaced.push(i);
        }
        let fates = if replaced.is_empty() {
            HashMap::new()
        } else {
            let olds: Vec<&pkgdb::Package> = replaced.iter().map(|&i| &held[i].pkg).collect();
            config_fates(tree, &olds, pkg.files(), rel)?
        };
        let (mut added, header) = install_one(tree, ctx, rel, pkg, &sha, &fates, r)?;
        // Erase what the replaced versions own and nobody else does.
        if !replaced.is_empty() {
            let mut keep: std::collections::HashSet<String> = std::collections::HashSet::new();
            for f in Package::files_of_header(&header).map_err(|e| bad(&e))? {
                keep.insert(f.path);
            }
            for (i, h) in held.iter().enumerate() {
                if replaced.contains(&i) {
                    continue;
                }
                // A header whose file list does not parse owns nothing we can name; keep going.
                for f in h.pkg.files().unwrap_or_default() {
                    keep.insert(f.path);
                }
            }
            for &i in replaced.iter().rev() {
                let old = held.remove(i);
                erase_files(tree, ctx, &old.pkg, &keep, r)?;
                let verb = if old.pkg.evr().compare(&info.evr()) == std::cmp::Ordering::Greater {
                    "downgraded"
                } else {
                    "upgraded"
                };
                r.notes.push(format!(
                    "{verb} {} {} -> {}",
                    info.name,
                    evr(&old.pkg),
                    evr(&info)
                ));
                added.replaced = Some(evr(&old.pkg));
                match old.origin {
                    Origin::Db(n) => erase.push(n),
                    Origin::New(k) => {
                        if let Some(slot) = headers.get_mut(k) {
                            *slot = None;
                        }
                    }
                }
            }
        }
        let held_pkg = pkgdb::Package::from_header(header.clone()).map_err(|e| bad(&e))?;
        held.push(Held {
            pkg: held_pkg,
            origin: Origin::New(headers.len()),
        });
        headers.push(Some(header));
        r.packages.push(added);
    }
    let headers: Vec<Header> = headers.into_iter().flatten().collect();
    register(tree, ctx, dbdir, &erase, &headers, r)
}

/// What to do with a `%config` file both the old and the new version ship, decided as rpm does
/// (`rpmfiDecideFate`) when the file in the image no longer matches the old version's digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Edited locally and the package's version did not change: leave the image's file alone.
    Keep,
    /// Edited locally, `%config(noreplace)`: keep the image's file, write the new one as `.rpmnew`.
    AsRpmnew,
    /// Edited locally, plain `%config`: move the image's file to `.rpmsave`, install the new one.
    SaveOld,
}

/// Decide the fate of every `%config` file the new package shares with a replaced version.
fn config_fates(
    tree: &Tree,
    olds: &[&pkgdb::Package],
    new: &[pkgdb::rpm::FileEntry],
    rel: &str,
) -> StepResult<HashMap<String, Fate>> {
    let mut out = HashMap::new();
    for old in olds {
        let files = old
            .files()
            .map_err(|e| StepError::new(format!("package '{rel}': installed {}: {e}", old.name)))?;
        for of in files.iter().filter(|f| f.is_config()) {
            let Some(nf) = new.iter().find(|n| n.path == of.path && n.is_config()) else {
                continue;
            };
            if !modified(tree, of)? {
                continue;
            }
            let fate = if nf.digest == of.digest {
                Fate::Keep
            } else if nf
                .flags
                .is_some_and(|f| f & pkgdb::rpm::fileflags::NOREPLACE != 0)
            {
                Fate::AsRpmnew
            } else {
                Fate::SaveOld
            };
            out.insert(of.path.clone(), fate);
        }
    }
    Ok(out)
}

/// Whether the regular file at `f.path` differs from what the header says was installed there.
/// Files whose digest cannot be checked (no digest, unknown algorithm) count as modified, so they
/// are kept rather than lost.
fn modified(tree: &Tree, f: &pkgdb::rpm::FileEntry) -> StepResult<bool> {
    use pkgdb::rpm::DigestAlgo;
    let Some(id) = tree.lookup(f.path.as_bytes()) else {
        return Ok(false);
    };
    let NodeKind::Regular(c) = &tree.node(id).kind else {
        return Ok(false);
    };
    let Some(want) = &f.digest else {
        return Ok(true);
    };
    let data = c
        .read_to_vec(MAX_FILE)
        .map_err(|e| StepError::new(format!("{}: cannot read from the image: {e}", f.path)))?;
    let got = match f.digest_algo {
        DigestAlgo::Md5 => hex::encode(md5::Md5::digest(&data)),
        DigestAlgo::Sha1 => hex::encode(sha1::Sha1::digest(&data)),
        DigestAlgo::Sha224 => hex::encode(sha2::Sha224::digest(&data)),
        DigestAlgo::Sha256 => hex::encode(Sha256::digest(&data)),
        DigestAlgo::Sha384 => hex::encode(sha2::Sha384::digest(&data)),
        DigestAlgo::Sha512 => hex::encode(sha2::Sha512::digest(&data)),
        DigestAlgo::Other(_) => return Ok(true),
    };
    Ok(!got.eq_ignore_ascii_case(want))
}

/// Rename `from` to `to` inside the tree (the node keeps its metadata).
fn rename(tree: &mut Tree, ctx: &StepContext, from: &str, to: &str) -> StepResult {
    super::remove_if_present(tree, to);
    let id = tree.remove(from.as_bytes())?;
    tree.link_at(to.as_bytes(), id, &dir_meta(ctx))?;
    Ok(())
}

/// Remove the files of a replaced package that are not in `keep` (the new version's files and
/// every other package's), as the erase half of `rpm -U` does: directories only once empty,
/// locally modified `%config` files kept as `.rpmsave`.
fn erase_files(
    tree: &mut Tree,
    ctx: &StepContext,
    old: &pkgdb::Package,
    keep: &std::collections::HashSet<String>,
    r: &mut StepReport,
) -> StepResult {
    let mut files = old
        .files()
        .map_err(|e| StepError::new(format!("installed {}: {e}", old.name)))?;
    // Deepest first, so a directory comes after everything in it.
    files.sort_by(|a, b| b.path.cmp(&a.path));
    for f in files {
        if keep.contains(&f.path) {
            continue;
        }
        let Some(id) = tree.lookup(f.path.as_bytes()) else {
            continue;
        };
        match &tree.node(id).kind {
            NodeKind::Directory(e) => {
                if !e.is_empty() {
                    continue;
                }
            }
            NodeKind::Regular(_) if f.is_config() && modified(tree, &f)? => {
                let save = format!("{}.rpmsave", f.path);
                rename(tree, ctx, &f.path, &save)?;
                r.removed.push(f.path.clone());
                r.added.push(save.clone());
                r.notes.push(format!(
                    "{}: {} was modified in the image, saved as {save}",
                    old.name, f.path
                ));
                continue;
            }
            _ => {}
        }
        if super::remove_if_present(tree, &f.path) {
            r.removed.push(f.path);
        }
    }
    Ok(())
}

fn install_one(
    tree: &mut Tree,
    ctx: &StepContext,
    rel: &str,
    mut pkg: RpmPackage<'static>,
    sha: &str,
    fates: &HashMap<String, Fate>,
    r: &mut StepReport,
) -> StepResult<(super::PackageAdded, Header)> {
    let bad = |e: &dyn std::fmt::Display| StepError::new(format!("package '{rel}': {e}"));
    let info = pkg.package().map_err(|e| bad(&e))?;
    if info.source_rpm.is_none() && pkg.lead.kind == 1 {
        return Err(bad(&"is a source package"));
    }
    let label = format!("{}-{}", info.name, evr(&info));
    let acc = Accounts::load(tree)?;
    let users: HashMap<String, u32> = acc.users().map(|u| (u.name, u.uid)).collect();
    let groups: HashMap<String, u32> = acc.groups().map(|g| (g.name, g.gid)).collect();
    let mut unknown = std::collections::BTreeSet::new();
    // Hard links: (inode number in the package) -> node already placed.
    let mut links: HashMap<u32, rootfs::NodeId> = HashMap::new();
    let mut pending_links: Vec<(String, u32)> = Vec::new();
    let mut count = 0usize;
    let time = |m: Option<u32>| Timestamp::from_secs(m.map(i64::from).unwrap_or(ctx.epoch.sec));
    while let Some(mut e) = pkg.next_entry().map_err(|e| bad(&e))? {
        count += 1;
        if count > MAX_ENTRIES {
            return Err(bad(&format!("more than {MAX_ENTRIES} payload entries")));
        }
        let path = e.path.clone();
        rootfs::tree::normalize(path.as_bytes()).map_err(|er| bad(&er))?;
        let f = e.file.clone();
        if f.as_ref()
            .and_then(|f| f.flags)
            .is_some_and(|fl| fl & pkgdb::rpm::fileflags::GHOST != 0)
        {
            continue;
        }
        let mode = f.as_ref().map(|f| u32::from(f.mode)).unwrap_or(e.mode);
        let uid = match f.as_ref().and_then(|f| f.user.clone()) {
            Some(u) => users.get(&u).copied().unwrap_or_else(|| {
                unknown.insert(format!("user {u}"));
                0
            }),
            None => 0,
        };
        let gid = match f.as_ref().and_then(|f| f.group.clone()) {
            Some(g) => groups.get(&g).copied().unwrap_or_else(|| {
                unknown.insert(format!("group {g}"));
                0
            }),
            None => 0,
        };
        let mut meta = Metadata::new(
            (mode & 0o7777) as u16,
            uid,
            gid,
            time(f.as_ref().and_then(|f| f.mtime)),
        );
        if let Some(c) = f
            .as_ref()
            .and_then(|f| f.caps.clone())
            .filter(|c| !c.is_empty())
        {
            let x = caps_xattr(&c)
                .map_err(|m| bad(&format!("{path}: file capabilities '{c}': {m}")))?;
            meta.xattrs.insert(b"security.capability".to_vec(), x);
        }
        let existed = tree.lookup(path.as_bytes()).is_some();
        let kind = match mode & 0o170000 {
            0o100000 => {
                let ino = f.as_ref().and_then(|f| f.inode);
                if e.size == 0 && f.as_ref().is_some_and(|f| f.size > 0) {
                    // An earlier link of a hard-link set: its data comes with the last one.
                    if let Some(i) = ino {
                        pending_links.push((path.clone(), i));
                        continue;
                    }
                }
                if e.size > MAX_FILE {
                    return Err(bad(&format!(
                        "{path}: {} bytes is over the {MAX_FILE} byte limit",
                        e.size
                    )));
                }
                let mut data = Vec::with_capacity(e.size as usize);
                let sz = e.size;
                (&mut e)
                    .take(sz)
                    .read_to_end(&mut data)
                    .map_err(|er| bad(&format!("{path}: {er}")))?;
                // Payload paths are absolute, as the header's file list.
                let abs = path.clone();
                let mut path = path;
                match fates.get(&abs) {
                    Some(Fate::Keep) => {
                        r.notes
                            .push(format!("{label}: {abs} was modified in the image, kept"));
                        continue;
                    }
                    Some(Fate::AsRpmnew) => {
                        path = format!("{abs}.rpmnew");
                        r.notes.push(format!(
                            "{label}: {abs} was modified in the image, kept; the new one is {path}"
                        ));
                    }
                    Some(Fate::SaveOld) => {
                        let save = format!("{abs}.rpmsave");
                        rename(tree, ctx, &abs, &save)?;
                        r.added.push(save.clone());
                        r.notes.push(format!(
                            "{label}: {abs} was modified in the image, saved as {save}"
                        ));
                    }
                    None => {}
                }
                let existed = tree.lookup(path.as_bytes()).is_some();
                let node = Node::new(NodeKind::Regular(Content::from_bytes(data)), meta);
                let id = tree.insert(path.as_bytes(), node, &dir_meta(ctx))?;
                if let Some(i) = ino {
                    links.insert(i, id);
                }
                r.note_write(&path, existed);
                continue;
            }
            0o040000 => NodeKind::empty_dir(),
            0o120000 => {
                let target = match f.as_ref().and_then(|f| f.link_target.clone()) {
                    Some(t) => t.into_bytes(),
                    None => {
                        let mut t = Vec::new();
                        (&mut e)
                            .take(4096)
                            .read_to_end(&mut t)
                            .map_err(|er| bad(&format!("{path}: {er}")))?;
                        t
                    }
                };
                NodeKind::Symlink(target)
            }
            0o020000 | 0o060000 => {
                let rdev = f.as_ref().and_then(|f| f.rdev).unwrap_or(0);
                let d = Device {
                    major: (rdev >> 8) & 0xfff,
                    minor: (rdev & 0xff) | ((rdev >> 12) & 0xfff00),
                };
                if mode & 0o170000 == 0o020000 {
                    NodeKind::CharDevice(d)
                } else {
                    NodeKind::BlockDevice(d)
                }
            }
            0o010000 => NodeKind::Fifo,
            _ => return Err(bad(&format!("{path}: unsupported file mode {mode:o}"))),
        };
        if let (NodeKind::Directory(_), Some(id)) = (&kind, tree.lookup(path.as_bytes())) {
            if tree.entries(id).is_some() {
                // Existing directory: take the package's metadata, keep the contents.
                tree.node_mut(id).meta = meta;
                continue;
            }
        }
        tree.insert(path.as_bytes(), Node::new(kind, meta), &dir_meta(ctx))?;
        r.note_write(&path, existed);
    }
    for (path, ino) in pending_links {
        let existed = tree.lookup(path.as_bytes()).is_some();
        match links.get(&ino) {
            Some(&id) => {
                tree.link_at(path.as_bytes(), id, &dir_meta(ctx))?;
                r.note_write(&path, existed);
            }
            None => {
                return Err(bad(&format!(
                    "{path}: hard link whose data never came in the payload"
                )))
            }
        }
    }
    for u in unknown {
        r.notes.push(format!(
            "{label}: unknown {u} in the image, files given to root (as rpm does)"
        ));
    }
    r.scriptlets_skipped.extend(scriptlets(&pkg.header, &label));
    let install_time = u32::try_from(ctx.epoch.sec.max(0)).unwrap_or(u32::MAX);
    let header = pkg.header_for_install(install_time, install_time);
    Ok((
        super::PackageAdded {
            name: info.name.clone(),
            evr: evr(&info),
            arch: info.arch.clone().unwrap_or_default(),
            files: pkg.files().len(),
            sha256: sha.to_string(),
            replaced: None,
        },
        header,
    ))
}

/// Update the image's database, in its own format: the records `erase` out (replaced versions),
/// the install `headers` in.
fn register(
    tree: &mut Tree,
    ctx: &StepContext,
    dbdir: &str,
    erase: &[u32],
    headers: &[Header],
    r: &mut StepReport,
) -> StepResult {
    let src = inspect::TreeDb {
        tree,
        dir: dbdir.to_string(),
    };
    let (backend, bytes) =
        pkgdb::rpmdb::detect(&src).map_err(|e| StepError::new(format!("{dbdir}: {e}")))?;
    // Berkeley DB: the index files regenerated from the new Packages, and which rpm they are for.
    let mut bdb_indexes: Option<(bdb_index::Layout, Vec<bdb_index::IndexFile>)> = None;
    let (path, new) = match backend {
        pkgdb::rpmdb::Backend::Sqlite => {
            let tmp = tempdir()?;
            let file = tmp.join("rpmdb.sqlite");
            std::fs::write(&file, &bytes)
                .map_err(|e| StepError::new(format!("temporary copy of the rpm database: {e}")))?;
            // A WAL left in the image holds committed transactions: bring it along.
            if let Some(wal) = src.read_opt("rpmdb.sqlite-wal") {
                std::fs::write(tmp.join("rpmdb.sqlite-wal"), wal).map_err(|e| {
                    StepError::new(format!("temporary copy of the rpm database: {e}"))
                })?;
            }
            for &n in erase {
                pkgdb::rpmdb::sqlite::remove_package(&file, n)
                    .map_err(|e| StepError::new(format!("{dbdir}/rpmdb.sqlite: {e}")))?;
            }
            for h in headers {
                pkgdb::rpmdb::sqlite::add_package(&file, h)
                    .map_err(|e| StepError::new(format!("{dbdir}/rpmdb.sqlite: {e}")))?;
            }
            checkpoint(&file)?;
            let new =
                std::fs::read(&file).map_err(|e| StepError::new(format!("rpm database: {e}")))?;
            let _ = std::fs::remove_dir_all(&tmp);
            for side in ["rpmdb.sqlite-wal", "rpmdb.sqlite-shm"] {
                let p = join(dbdir, side);
                if super::remove_if_present(tree, &p) {
                    r.removed.push(p);
                }
            }
            (join(dbdir, "rpmdb.sqlite"), new)
        }
        pkgdb::rpmdb::Backend::Bdb => {
            let mut records = pkgdb::rpmdb::bdb::read_packages(&bytes)
                .map_err(|e| StepError::new(format!("{dbdir}/Packages: {e}")))?;
            records.retain(|(n, _)| !erase.contains(n));
            let mut next = records.iter().map(|(n, _)| *n).max().unwrap_or(0);
            for h in headers {
                next += 1;
                records.push((next, h.to_bytes()));
            }
            let layout = bdb_index::layout_for(&records);
            // rpm 4.4's libdb 4.3 reads only hash version 8: Packages is written in the same
            // version as the indexes, so also in version 8 when the image's rpm is unknown
            // (every later libdb reads version 8 too).
            let version = bdb_index::hash_version(layout);
            let new = pkgdb::rpmdb::bdb::write_packages_as(&records, version)
                .map_err(|e| StepError::new(format!("{dbdir}/Packages: {e}")))?;
            let files = bdb_index::build_indexes(&records, layout)
                .map_err(|e| StepError::new(format!("{dbdir}: {e}")))?;
            bdb_indexes = Some((layout, files));
            (join(dbdir, "Packages"), new)
        }
        pkgdb::rpmdb::Backend::Ndb => {
            return Err(StepError::new(format!(
                "{dbdir}/Packages.db: writing ndb databases is not supported"
            )));
        }
    };
    let existed = super::write_file(tree, ctx, &path, new, Metadata::new(0o644, 0, 0, ctx.epoch))?;
    r.note_write(&path, existed);
    if let Some((layout, files)) = bdb_indexes {
        write_bdb_indexes(tree, ctx, dbdir, layout, files, r)?;
    }
    Ok(())
}

/// Put the regenerated Berkeley DB index files beside `Packages` (mode 0644, root, the step's
/// epoch), replacing the old ones, as `rpm --rebuilddb` of the image's rpm would leave them (rpm
/// before 4.9 does not rebuild missing indexes: without them `rpm -q NAME` and `rpm -qf PATH`
/// find nothing). Other capitalised files but `Packages` and `DB_CONFIG` are stale indexes and
/// go, as do the environment region files `__db.*`, which describe the old files.
fn write_bdb_indexes(
    tree: &mut Tree,
    ctx: &StepContext,
    dbdir: &str,
    layout: bdb_index::Layout,
    files: Vec<bdb_index::IndexFile>,
    r: &mut StepReport,
) -> StepResult {
    let written: std::collections::HashSet<&str> = files.iter().map(|f| f.name).collect();
    for name in super::list_dir(tree, dbdir) {
        let stale_index = name != "Packages"
            && name != "DB_CONFIG"
            && !written.contains(name.as_str())
            && name.chars().next().is_some_and(|c| c.is_ascii_uppercase());
        if stale_index || name.starts_with("__db.") {
            let p = join(dbdir, &name);
            if super::remove_if_present(tree, &p) {
                r.removed.push(p);
            }
        }
    }
    let names: Vec<&str> = files.iter().map(|f| f.name).collect();
    for f in files {
        let p = join(dbdir, f.name);
        let existed = super::write_file(
            tree,
            ctx,
            &p,
            f.bytes,
            Metadata::new(0o644, 0, 0, ctx.epoch),
        )?;
        r.note_write(&p, existed);
    }
    r.notes.push(match layout {
        bdb_index::Layout::SelfRebuilding => format!(
            "{dbdir}: index files removed; the image's rpm (4.9 or later) rebuilds them on first use"
        ),
        _ => {
            let which = match layout {
                bdb_index::Layout::Rpm44 => "as rpm 4.4 keeps them",
                bdb_index::Layout::Rpm48 => "as rpm 4.8 keeps them",
                _ => "for rpm 4.4 and 4.8 (the image's rpm version is unknown)",
            };
            format!(
                "{dbdir}: index files regenerated from Packages {which}: {}",
                names.join(", ")
            )
        }
    });
    Ok(())
}

impl inspect::TreeDb<'_> {
    fn read_opt(&self, name: &str) -> Option<Vec<u8>> {
        pkgdb::rpmdb::DbSource::read(self, name).ok().flatten()
    }
}

/// Fold a WAL into the main file so the image carries one self-contained database.
fn checkpoint(file: &std::path::Path) -> StepResult {
    let conn = rusqlite::Connection::open(file)
        .map_err(|e| StepError::new(format!("rpm database: {e}")))?;
    conn.pragma_update(None, "journal_mode", "DELETE")
        .map_err(|e| StepError::new(format!("rpm database checkpoint: {e}")))?;
    drop(conn);
    Ok(())
}

fn tempdir() -> StepResult<std::path::PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    for _ in 0..100 {
        let p = base.join(format!(
            "wafer-rpmdb-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        if std::fs::create_dir(&p).is_ok() {
            return Ok(p);
        }
    }
    Err(StepError::new(
        "cannot create a temporary directory for the rpm database",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_text_to_xattr() {
        let v = caps_xattr("cap_net_raw=ep").unwrap();
        assert_eq!(&v[..4], &0x0200_0001u32.to_le_bytes());
        assert_eq!(&v[4..8], &(1u32 << 13).to_le_bytes());
        let v = caps_xattr("cap_net_admin,cap_net_raw+p").unwrap();
        assert_eq!(&v[..4], &0x0200_0000u32.to_le_bytes());
        assert_eq!(&v[4..8], &((1u32 << 12) | (1 << 13)).to_le_bytes());
        assert!(caps_xattr("cap_bogus=ep").is_err());
    }
}
