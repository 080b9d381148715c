//! Installed packages (rpm databases in any backend, dpkg status) read through pkgdb from the
//! image's files, an offline `rpm -V` / `dpkg --verify` against the image's inodes, and the
//! files in system directories that no package owns.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use rayon::prelude::*;
use rootfs::{FileType, NodeId, NodeKind, Tree};
use serde::Serialize;

use crate::accounts::Ids;
use crate::util;
use crate::Problem;

mod dpkg;

/// Largest rpm database file read into memory.
pub const MAX_DB_BYTES: u64 = 1 << 30;

/// One installed package.
#[derive(Clone, Debug, Serialize)]
pub struct PackageInfo {
    /// `rpm` or `dpkg`.
    pub manager: String,
    /// Name.
    pub name: String,
    /// Epoch (rpm EPOCH; dpkg's epoch stays inside `version`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u32>,
    /// Version (dpkg: the full version string).
    pub version: String,
    /// rpm release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Architecture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Source package (rpm SOURCERPM file name, dpkg Source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// rpm VENDOR / dpkg Maintainer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// rpm LICENSE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Install time (seconds since the epoch, rpm only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_time: Option<u64>,
    /// Package URL.
    pub purl: String,
    /// Number of files the database lists for it.
    pub files: usize,
    /// Why its file list could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_list_error: Option<String>,
    /// dpkg's `Status` of the package (dpkg only): every package `dpkg-query -W` lists is here,
    /// `hold`, `deinstall`, half-installed, unpacked, triggers-* and config-files ones included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<PackageStatus>,
}

/// dpkg's `Status` field of a package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PackageStatus {
    /// `dpkg-query`'s `${db:Status-Abbrev}`: `ii `, `hi `, `ri `, `rc `, `iU `, `iF `, `iW `,
    /// `it `, `iHR`, ...
    pub abbrev: String,
    /// Selection: `install`, `hold`, `deinstall`, `purge`, `unknown`.
    pub want: String,
    /// Error flag: `ok` or `reinstreq`.
    pub flag: String,
    /// `installed`, `triggers-pending`, `triggers-awaited`, `half-configured`, `unpacked`,
    /// `half-installed`, `config-files`.
    pub state: String,
}

/// A packaged file that differs from the database.
#[derive(Clone, Debug, Serialize)]
pub struct Mismatch {
    /// Path.
    pub path: String,
    /// Owning package.
    pub package: String,
    /// A `%config` / conffile (changes there are often intended).
    pub config: bool,
    /// What differs: `missing`, `type`, `mode`, `owner`, `group`, `digest`, `link`, `capabilities`.
    pub differs: Vec<String>,
    /// The line the package manager's own check prints for it (dpkg: `dpkg --verify`'s
    /// `??5?????? c /etc/foo`, `missing     /usr/bin/bar`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<String>,
}

/// The packages section.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Packages {
    /// `rpm-sqlite`, `rpm-ndb`, `rpm-bdb`, `dpkg` (absent if no database).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Directory or file of the database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Installed packages, sorted by name.
    pub list: Vec<PackageInfo>,
    /// `gpg-pubkey` entries (imported keys, not software): `gpg-pubkey-VERSION-RELEASE`.
    pub gpg_keys: Vec<String>,
    /// Packaged files checked.
    pub verified_files: u64,
    /// Packaged files whose digest algorithm is not supported (not checked for content).
    pub unverifiable_digests: u64,
    /// Packaged files that differ.
    pub mismatches: Vec<Mismatch>,
    /// Files under /bin, /sbin, /usr, /lib*, /etc owned by no package (only when a database was read).
    pub unowned_system_files: Vec<String>,
    /// Owning package names (sorted, without version) of the paths [`inspect`] was asked about:
    /// every setuid, setgid and capability file and every enabled service's daemon. A path no
    /// package lists is absent. Matched by inode, so a package listing `/bin/su` owns
    /// `/usr/bin/su` on a /usr-merged image.
    pub owners: BTreeMap<String, Vec<String>>,
    /// Why the database could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Package databases that exist but could not be read completely. The vetter fails closed on
    /// these: `wafer vet` gives "could not vet" unless the policy waives the source, because a
    /// database read in part would show fewer packages than the image holds. Records that could be
    /// read are still in [`Packages::list`] (as rpm lists the readable headers).
    pub damaged: Vec<DamagedSource>,
}

/// A package database (or one of its files) that exists but could not be read completely.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DamagedSource {
    /// Path in the image of the damaged file or directory (`/var/lib/rpm/Packages`,
    /// `/var/lib/dpkg/status`).
    pub path: String,
    /// `rpm-bdb`, `rpm-sqlite`, `rpm-ndb` or `dpkg`.
    pub format: String,
    /// What is wrong, naming the offset, record or field where known.
    pub reason: String,
    /// Records read and trusted (they are listed in [`Packages::list`]).
    pub records_read: u64,
    /// Records found but not trusted (unreadable, or failing their digest), when countable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_unreadable: Option<u64>,
}

struct TreeDb<'a> {
    tree: &'a Tree,
    dir: String,
}

impl pkgdb::rpmdb::DbSource for TreeDb<'_> {
    fn read(&self, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        let p = util::join(&self.dir, name);
        match util::read_file(self.tree, &p, MAX_DB_BYTES) {
            Ok(b) => Ok(Some(b)),
            Err(util::ReadError::Path { .. }) | Err(util::ReadError::NotRegular { .. }) => Ok(None),
            Err(e) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e.to_string(),
            )),
        }
    }
}

/// Percent-encode a purl segment (RFC 3986 unreserved characters kept).
pub fn purl_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The purl namespace for an rpm distribution id.
fn rpm_namespace(distro: Option<&str>) -> String {
    match distro {
        Some("rhel") | Some("redhat") => "redhat".into(),
        Some(d) if !d.is_empty() => purl_encode(d),
        _ => "rpm".into(),
    }
}

/// Digest computations deferred to a parallel pass.
struct DigestJob {
    node: NodeId,
    algo: &'static str,
    expected: String,
    mismatch: usize,
}

fn digest_of(tree: &Tree, id: NodeId, algo: &str) -> Option<String> {
    use sha2::Digest;
    let NodeKind::Regular(c) = &tree.node(id).kind else {
        return None;
    };
    let mut r = c.reader().ok()?;
    let mut buf = vec![0u8; 256 << 10];
    macro_rules! run {
        ($h:expr) => {{
            let mut h = $h;
            loop {
                let n = r.read(&mut buf).ok()?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Some(hex::encode(h.finalize()))
        }};
    }
    match algo {
        "md5" => run!(md5::Md5::new()),
        "sha1" => run!(sha1::Sha1::new()),
        "sha224" => run!(sha2::Sha224::new()),
        "sha256" => run!(sha2::Sha256::new()),
        "sha384" => run!(sha2::Sha384::new()),
        "sha512" => run!(sha2::Sha512::new()),
        _ => None,
    }
}

/// Parse rpm's capability text (`cap_to_text`: `cap_net_raw=ep`, `= cap_a,cap_b+ep`) to
/// (permitted, inheritable, effective) masks; what is not understood is skipped.
pub fn parse_cap_text(text: &str) -> (u64, u64, u64) {
    let s = rootfs::caps::parse_text_lenient(text);
    (s.permitted, s.inheritable, s.effective)
}

fn check_meta(
    tree: &Tree,
    ids: &Ids,
    id: NodeId,
    mode: u16,
    user: Option<&str>,
    group: Option<&str>,
    differs: &mut Vec<String>,
) {
    let node = tree.node(id);
    if mode != 0 {
        if let Some(ft) = FileType::from_mode(u32::from(mode)) {
            if ft != node.file_type() {
                differs.push("type".into());
                return;
            }
        }
        if node.file_type() != FileType::Symlink && (mode & 0o7777) != (node.meta.perm & 0o7777) {
            differs.push("mode".into());
        }
    }
    if let Some(u) = user {
        if ids.users.get(&node.meta.uid).map(String::as_str) != Some(u)
            && !(u == "root" && node.meta.uid == 0)
        {
            differs.push("owner".into());
        }
    }
    if let Some(g) = group {
        if ids.groups.get(&node.meta.gid).map(String::as_str) != Some(g)
            && !(g == "root" && node.meta.gid == 0)
        {
            differs.push("group".into());
        }
    }
}

/// Paths whose owning packages are recorded in [`Packages::owners`], keyed by the inode the
/// path names (its last component not followed), so any packaged path reaching it counts.
struct OwnerWatch<'a> {
    by_node: HashMap<NodeId, Vec<&'a str>>,
    found: BTreeMap<String, Vec<String>>,
}

impl<'a> OwnerWatch<'a> {
    fn new(tree: &Tree, paths: &'a [String]) -> Self {
        let mut by_node: HashMap<NodeId, Vec<&'a str>> = HashMap::new();
        for p in paths {
            if let Ok(id) = tree.resolve(p.as_bytes(), false) {
                by_node.entry(id).or_default().push(p.as_str());
            }
        }
        OwnerWatch {
            by_node,
            found: BTreeMap::new(),
        }
    }

    fn note(&mut self, id: NodeId, package: &str) {
        if let Some(paths) = self.by_node.get(&id) {
            for p in paths {
                self.found
                    .entry((*p).to_string())
                    .or_default()
                    .push(package.to_string());
            }
        }
    }

    fn finish(mut self) -> BTreeMap<String, Vec<String>> {
        for v in self.found.values_mut() {
            v.sort();
            v.dedup();
        }
        self.found
    }
}

/// Read packages and verify them against the tree. `hashes` holds the sha256 of regular files
/// already computed by the file scan; `owner_paths` are the paths whose owning packages go to
/// [`Packages::owners`] (the setuid/setgid/capability files and service daemons).
pub fn inspect(
    tree: &Tree,
    hashes: &HashMap<NodeId, String>,
    ids: &Ids,
    distro: Option<&str>,
    owner_paths: &[String],
    problems: &mut Vec<Problem>,
) -> Packages {
    let mut out = Packages::default();
    let mut owned = vec![false; tree.node_slots()];
    let mut watch = OwnerWatch::new(tree, owner_paths);
    let mut jobs: Vec<DigestJob> = Vec::new();
    let mut pending: Vec<Mismatch> = Vec::new();
    let mut found_db = false;
    for dir in ["/var/lib/rpm", "/usr/lib/sysimage/rpm"] {
        let is_dir = util::resolve(tree, dir).is_some_and(|id| tree.entries(id).is_some());
        if !is_dir {
            continue;
        }
        let src = TreeDb {
            tree,
            dir: dir.to_string(),
        };
        let backend = match pkgdb::rpmdb::detect(&src) {
            Ok((b, _)) => b,
            Err(pkgdb::Error::NoDatabase) => continue,
            Err(e) => {
                out.error = Some(format!("{dir}: {e}"));
                out.damaged.push(DamagedSource {
                    path: dir.into(),
                    format: "rpm".into(),
                    reason: e.to_string(),
                    records_read: 0,
                    records_unreadable: None,
                });
                problems.push(Problem {
                    path: dir.into(),
                    message: e.to_string(),
                });
                continue;
            }
        };
        found_db = true;
        out.database = Some(dir.to_string());
        out.format = Some(
            match backend {
                pkgdb::rpmdb::Backend::Sqlite => "rpm-sqlite",
                pkgdb::rpmdb::Backend::Ndb => "rpm-ndb",
                pkgdb::rpmdb::Backend::Bdb => "rpm-bdb",
            }
            .into(),
        );
        let pkgs = match pkgdb::rpmdb::read_packages(&src) {
            Ok(p) => p,
            Err(e) => {
                out.error = Some(format!("{dir}: {e}"));
                out.damaged.push(DamagedSource {
                    path: dir.into(),
                    format: out.format.clone().unwrap_or_else(|| "rpm".into()),
                    reason: e.to_string(),
                    records_read: 0,
                    records_unreadable: None,
                });
                problems.push(Problem {
                    path: dir.into(),
                    message: e.to_string(),
                });
                break;
            }
        };
        let ns = rpm_namespace(distro);
        for p in pkgs {
            if p.is_gpg_pubkey {
                out.gpg_keys
                    .push(format!("gpg-pubkey-{}-{}", p.version, p.release));
                continue;
            }
            let mut purl = format!(
                "pkg:rpm/{ns}/{}@{}",
                purl_encode(&p.name),
                purl_encode(&format!("{}-{}", p.version, p.release))
            );
            let mut q = Vec::new();
            if let Some(a) = &p.arch {
                q.push(format!("arch={}", purl_encode(a)));
            }
            if let Some(e) = p.epoch {
                q.push(format!("epoch={e}"));
            }
            if !q.is_empty() {
                purl.push('?');
                purl.push_str(&q.join("&"));
            }
            let mut info = PackageInfo {
                manager: "rpm".into(),
                name: p.name.clone(),
                epoch: p.epoch,
                version: p.version.clone(),
                release: Some(p.release.clone()),
                arch: p.arch.clone(),
                source: p.source_rpm.clone(),
                vendor: p.vendor.clone(),
                license: p.license.clone(),
                install_time: p.install_time,
                purl,
                files: 0,
                file_list_error: None,
                status: None,
            };
            match p.files() {
                Ok(files) => {
                    info.files = files.len();
                    for f in files {
                        let ghost = f
                            .flags
                            .is_some_and(|x| x & pkgdb::rpm::fileflags::GHOST != 0);
                        let missingok = f
                            .flags
                            .is_some_and(|x| x & pkgdb::rpm::fileflags::MISSINGOK != 0);
                        let id = tree.resolve(f.path.as_bytes(), false).ok();
                        if let Some(id) = id {
                            if let Some(o) = owned.get_mut(id.0 as usize) {
                                *o = true;
                            }
                            watch.note(id, &p.name);
                        }
                        if ghost {
                            continue;
                        }
                        out.verified_files += 1;
                        let mut differs = Vec::new();
                        let Some(id) = id else {
                            if !missingok {
                                pending.push(Mismatch {
                                    path: f.path.clone(),
                                    package: p.nevra(),
                                    config: f.is_config(),
                                    differs: vec!["missing".into()],
                                    verify: None,
                                });
                            }
                            continue;
                        };
                        check_meta(
                            tree,
                            ids,
                            id,
                            f.mode,
                            f.user.as_deref(),
                            f.group.as_deref(),
                            &mut differs,
                        );
                        let node = tree.node(id);
                        if let (Some(t), NodeKind::Symlink(actual)) = (&f.link_target, &node.kind) {
                            if t.as_bytes() != actual.as_slice() {
                                differs.push("link".into());
                            }
                        }
                        let want_caps = f.caps.as_deref().map(parse_cap_text).unwrap_or((0, 0, 0));
                        let have_caps = node
                            .meta
                            .xattrs
                            .get(b"security.capability".as_slice())
                            .and_then(|v| crate::caps::decode(v).ok())
                            .map(|c| {
                                (
                                    c.permitted,
                                    c.inheritable,
                                    if c.effective { c.permitted } else { 0 },
                                )
                            })
                            .unwrap_or((0, 0, 0));
                        if want_caps != have_caps && node.file_type() == FileType::Regular {
                            differs.push("capabilities".into());
                        }
                        let idx = pending.len();
                        if let (Some(d), FileType::Regular) = (&f.digest, node.file_type()) {
                            let algo = match f.digest_algo {
                                pkgdb::rpm::DigestAlgo::Md5 => "md5",
                                pkgdb::rpm::DigestAlgo::Sha1 => "sha1",
                                pkgdb::rpm::DigestAlgo::Sha224 => "sha224",
                                pkgdb::rpm::DigestAlgo::Sha256 => "sha256",
                                pkgdb::rpm::DigestAlgo::Sha384 => "sha384",
                                pkgdb::rpm::DigestAlgo::Sha512 => "sha512",
                                pkgdb::rpm::DigestAlgo::Other(_) => "",
                            };
                            if algo.is_empty() {
                                out.unverifiable_digests += 1;
                            } else if algo == "sha256" && hashes.contains_key(&id) {
                                if hashes.get(&id) != Some(&d.to_ascii_lowercase()) {
                                    differs.push("digest".into());
                                }
                            } else {
                                jobs.push(DigestJob {
                                    node: id,
                                    algo,
                                    expected: d.to_ascii_lowercase(),
                                    mismatch: idx,
                                });
                            }
                        }
                        pending.push(Mismatch {
                            path: f.path.clone(),
                            package: p.nevra(),
                            config: f.is_config(),
                            differs,
                            verify: None,
                        });
                    }
                }
                Err(e) => {
                    info.file_list_error = Some(e.to_string());
                    problems.push(Problem {
                        path: dir.into(),
                        message: format!("package {}: {e}", p.name),
                    });
                }
            }
            out.list.push(info);
        }
        break;
    }
    dpkg::inspect(
        tree,
        distro,
        &mut dpkg::Sink {
            out: &mut out,
            owned: &mut owned,
            watch: &mut watch,
            jobs: &mut jobs,
            pending: &mut pending,
            found_db: &mut found_db,
            problems,
        },
    );
    out.owners = watch.finish();
    let results: Vec<(usize, bool)> = jobs
        .par_iter()
        .map(|j| {
            (
                j.mismatch,
                digest_of(tree, j.node, j.algo).as_deref() == Some(j.expected.as_str()),
            )
        })
        .collect();
    for (idx, ok) in results {
        if !ok {
            if let Some(m) = pending.get_mut(idx) {
                m.differs.push("digest".into());
            }
        }
    }
    dpkg::finish(&mut pending);
    out.mismatches = pending
        .into_iter()
        .filter(|m| !m.differs.is_empty())
        .collect();
    out.mismatches.sort_by(|a, b| a.path.cmp(&b.path));
    out.list
        .sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    if found_db {
        tree.walk(|path, id| {
            let p = util::show(path);
            let system = ["/bin/", "/sbin/", "/usr/", "/lib", "/etc/"]
                .iter()
                .any(|d| p.starts_with(d));
            if !system || matches!(tree.node(id).kind, NodeKind::Directory(_)) {
                return;
            }
            if !owned.get(id.0 as usize).copied().unwrap_or(true) {
                out.unowned_system_files.push(p);
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_text_forms() {
        let raw = 1u64 << 13;
        assert_eq!(parse_cap_text("cap_net_raw=ep"), (raw, 0, raw));
        assert_eq!(parse_cap_text("= cap_net_raw+ep"), (raw, 0, raw));
        assert_eq!(
            parse_cap_text("cap_net_admin,cap_net_raw+p"),
            (raw | (1 << 12), 0, 0)
        );
        assert_eq!(parse_cap_text("cap_chown=i"), (0, 1, 0));
    }

    #[test]
    fn purls() {
        assert_eq!(purl_encode("1:2.3+dfsg-1"), "1%3A2.3%2Bdfsg-1");
        assert_eq!(rpm_namespace(Some("centos")), "centos");
        assert_eq!(rpm_namespace(None), "rpm");
    }
}
