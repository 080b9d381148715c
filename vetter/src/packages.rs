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
    /// What it needs, for the SBOM's dependency graph: one entry per relation, each the list of
    /// its alternatives (rpm: REQUIRENAME without `rpmlib(...)`, one alternative each; dpkg:
    /// `Pre-Depends` and `Depends`). Not part of the inventory JSON.
    #[serde(skip)]
    pub requires: Vec<Vec<String>>,
    /// What it offers besides its own name (rpm: PROVIDENAME, and those of its file paths that
    /// some installed package requires; dpkg: `Provides`). Not part of the inventory JSON.
    #[serde(skip)]
    pub provides: Vec<String>,
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
    /// What differs: `missing`, `type`, `mode`, `owner`, `group`, `digest`, `link`, `capabilities`;
    /// for rpm also `size`, `rdev`, `mtime`, in the order of rpm's letters.
    pub differs: Vec<String>,
    /// The line the package manager's own check prints for it (dpkg: `dpkg --verify`'s
    /// `??5?????? c /etc/foo`, `missing     /usr/bin/bar`; rpm: see [`Mismatch::rpm_line`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<String>,
    /// rpm only: the verify column exactly as `rpm -V` prints it (`S.5....T.`, `missing`);
    /// empty for other package managers.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub codes: String,
    /// rpm only: the file-attribute marker `rpm -V` prints (`c` config, `d` doc, `g` ghost, `l`
    /// license, `r` readme, `m` missingok, `n` noreplace, `s` specfile, `a` artifact, the first
    /// that applies), empty for none.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub flag: String,
}

impl Mismatch {
    /// The line `rpm -V` prints for this file (`S.5....T.  c /etc/foo`, `missing   c /etc/bar`);
    /// `None` for other package managers.
    pub fn rpm_line(&self) -> Option<String> {
        if self.codes.is_empty() {
            return None;
        }
        let flag = self.flag.chars().next().unwrap_or(' ');
        Some(if self.codes == "missing" {
            format!("missing   {flag} {}", self.path)
        } else {
            format!("{}  {flag} {}", self.codes, self.path)
        })
    }
}

/// rpm's verify letters in print order, with the `differs` word each stands for.
const RPM_LETTERS: [(char, &str); 9] = [
    ('S', "size"),
    ('M', "mode"),
    ('5', "digest"),
    ('D', "rdev"),
    ('L', "link"),
    ('U', "owner"),
    ('G', "group"),
    ('T', "mtime"),
    ('P', "capabilities"),
];

/// Sort an rpm mismatch's `differs` in rpm's letter order and derive its `codes` column.
fn rpm_codes(m: &mut Mismatch) {
    if m.differs.iter().any(|d| d == "missing") {
        m.codes = "missing".into();
        return;
    }
    let pos = |d: &String| RPM_LETTERS.iter().position(|(_, w)| w == d).unwrap_or(9);
    m.differs.sort_by_key(pos);
    m.differs.dedup();
    m.codes = RPM_LETTERS
        .iter()
        .map(|(c, w)| {
            if m.differs.iter().any(|d| d == w) {
                *c
            } else {
                '.'
            }
        })
        .collect();
}

/// rpm's file-attribute marker (`rpmFFlagsString`, first letter that applies).
fn rpm_flag(flags: u32) -> String {
    use pkgdb::rpm::fileflags as ff;
    [
        (ff::DOC, "d"),
        (ff::CONFIG, "c"),
        (ff::SPECFILE, "s"),
        (ff::MISSINGOK, "m"),
        (ff::NOREPLACE, "n"),
        (ff::GHOST, "g"),
        (ff::LICENSE, "l"),
        (ff::README, "r"),
        (ff::ARTIFACT, "a"),
    ]
    .iter()
    .find(|(b, _)| flags & b != 0)
    .map(|(_, l)| (*l).to_string())
    .unwrap_or_default()
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
    /// Packaged files that differ (for rpm: every file `rpm -Va` reports, except those in
    /// [`Packages::mtime_only`]).
    pub mismatches: Vec<Mismatch>,
    /// rpm files whose only difference is the modification time (`.......T.`): reported by
    /// `rpm -Va`, kept apart because a timestamp alone changes nothing a reviewer judges.
    /// [`Packages::mismatches`] and this list together are exactly `rpm -Va`'s lines.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub mtime_only: Vec<Mismatch>,
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
            // Absent. A name that is there but leads nowhere (dangling or looping symlink) or to
            // something other than a file is a database that cannot be read, not no database.
            Err(util::ReadError::Path { .. })
                if self.tree.resolve(p.as_bytes(), false).is_err() =>
            {
                Ok(None)
            }
            Err(e) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e.to_string(),
            )),
        }
    }
}

/// Percent-encode a purl segment as the purl spec's canonical form does (RFC 3986 unreserved
/// characters and `:` kept: `1:2.3+dfsg-1` -> `1:2.3%2Bdfsg-1`, as packageurl-python prints it).
pub fn purl_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b':') {
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

/// Name lookups as rpm does them inside the image (`rpmugUname`/`rpmugUid`; `root` is always 0).
struct Names<'a> {
    ids: &'a Ids,
    user_ids: HashMap<&'a str, u32>,
    group_ids: HashMap<&'a str, u32>,
}

impl<'a> Names<'a> {
    fn new(ids: &'a Ids) -> Self {
        let rev = |m: &'a HashMap<u32, String>| {
            let mut r: HashMap<&'a str, u32> = HashMap::new();
            for (id, n) in m {
                let e = r.entry(n.as_str()).or_insert(*id);
                *e = (*e).min(*id);
            }
            r
        };
        Names {
            ids,
            user_ids: rev(&ids.users),
            group_ids: rev(&ids.groups),
        }
    }

    /// rpm's owner test: the file's owner name is `want`, or `want` names the file's uid.
    fn matches(&self, group: bool, id: u32, want: &str) -> bool {
        let (names, ids) = if group {
            (&self.ids.groups, &self.group_ids)
        } else {
            (&self.ids.users, &self.user_ids)
        };
        let namematch = names.get(&id).is_some_and(|n| n == want);
        let wanted_id = if want == "root" {
            Some(0)
        } else {
            ids.get(want).copied()
        };
        namematch || wanted_id == Some(id)
    }
}

/// Linux's `new_encode_dev`, masked to 16 bits as `rpm -V` compares device numbers.
fn rdev16(major: u32, minor: u32) -> u32 {
    ((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)) & 0xffff
}

/// One file checked as `rpmfiVerify` does (rpm lib/verify.c): returns what differs (rpm's
/// `differs` words) and, when the digest must be computed, the node to hash. `None` = missing.
fn rpm_verify(
    tree: &Tree,
    names: &Names<'_>,
    f: &pkgdb::FileEntry,
    id: NodeId,
    mut flags: u32,
    differs: &mut Vec<String>,
) -> Option<NodeId> {
    use pkgdb::rpm::{fileflags as ff, verifyflags as vf};
    let mut node_id = id;
    let mut node = tree.node(id);
    let fflags = f.flags.unwrap_or(0);
    let want_type = FileType::from_mode(u32::from(f.mode));
    // A directory expected, a symlink to one found: follow it when root or the owner made it.
    if want_type == Some(FileType::Directory) && node.file_type() == FileType::Symlink {
        if let Ok(t) = tree.resolve(f.path.as_bytes(), true) {
            let owner_ok = node.meta.uid == 0
                || f.user
                    .as_deref()
                    .is_some_and(|u| names.matches(false, node.meta.uid, u));
            if tree.node(t).file_type() == FileType::Directory && owner_ok {
                node_id = t;
                node = tree.node(t);
            }
        }
    }
    let ft = node.file_type();
    if ft == FileType::Symlink {
        flags &= !vf::MODE;
    } else {
        flags &= !vf::LINKTO;
    }
    if ft != FileType::Regular {
        flags &= !(vf::DIGEST | vf::SIZE | vf::MTIME | vf::CAPS);
    }
    if fflags & ff::GHOST != 0 {
        flags &= !(vf::DIGEST | vf::SIZE | vf::MTIME | vf::LINKTO);
    }
    if flags & vf::LINKTO != 0 {
        let target = match &node.kind {
            NodeKind::Symlink(t) => Some(t.as_slice()),
            _ => None,
        };
        if target != Some(f.link_target.as_deref().unwrap_or("").as_bytes()) {
            differs.push("link".into());
        }
    }
    if flags & vf::SIZE != 0 && node.size() != f.size {
        differs.push("size".into());
    }
    if flags & vf::MODE != 0 {
        let (mut want, mut have) = (u32::from(f.mode), node.mode());
        if fflags & ff::GHOST != 0 {
            want &= 0o7777;
            have &= 0o7777;
        }
        if want != have {
            differs.push("mode".into());
        }
    }
    if flags & vf::RDEV != 0 {
        let dev = match &node.kind {
            NodeKind::CharDevice(d) | NodeKind::BlockDevice(d) => Some(rdev16(d.major, d.minor)),
            _ => None,
        };
        let is = |t| want_type == Some(t);
        if is(FileType::CharDevice) != (ft == FileType::CharDevice)
            || is(FileType::BlockDevice) != (ft == FileType::BlockDevice)
        {
            differs.push("rdev".into());
        } else if let Some(d) = dev {
            if d != f.rdev.unwrap_or(0) & 0xffff {
                differs.push("rdev".into());
            }
        }
    }
    if flags & vf::CAPS != 0 {
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
        if want_caps != have_caps {
            differs.push("capabilities".into());
        }
    }
    if flags & vf::MTIME != 0 && node.meta.mtime.sec != i64::from(f.mtime.unwrap_or(0)) {
        differs.push("mtime".into());
    }
    if flags & vf::USER != 0 {
        let ok = f
            .user
            .as_deref()
            .is_some_and(|u| names.matches(false, node.meta.uid, u));
        if !ok {
            differs.push("owner".into());
        }
    }
    if flags & vf::GROUP != 0 {
        let ok = f
            .group
            .as_deref()
            .is_some_and(|g| names.matches(true, node.meta.gid, g));
        if !ok {
            differs.push("group".into());
        }
    }
    (flags & vf::DIGEST != 0).then_some(node_id)
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
    rpm(
        tree,
        hashes,
        ids,
        distro,
        &mut out,
        &mut owned,
        &mut watch,
        &mut jobs,
        &mut pending,
        &mut found_db,
        problems,
    );
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
    // The package managers' own digests are checked under the same default hashing budget as the
    // file scan (rootfs::content::HashBudget): a database listing a huge sparse file must not make
    // the vetter hash terabytes. A file the budget refuses is counted as unverifiable and reported.
    let budget = rootfs::content::HashBudget::default();
    let results: Vec<(usize, Result<bool, String>)> = jobs
        .par_iter()
        .map(|j| {
            let admitted = match &tree.node(j.node).kind {
                NodeKind::Regular(c) => budget.admit(c).map_err(|e| e.to_string()),
                _ => Ok(()),
            };
            (
                j.mismatch,
                admitted.map(|()| {
                    digest_of(tree, j.node, j.algo).as_deref() == Some(j.expected.as_str())
                }),
            )
        })
        .collect();
    for (idx, ok) in results {
        match ok {
            Ok(true) => {}
            Ok(false) => {
                if let Some(m) = pending.get_mut(idx) {
                    m.differs.push("digest".into());
                }
            }
            Err(why) => {
                out.unverifiable_digests += 1;
                if let Some(m) = pending.get(idx) {
                    problems.push(Problem {
                        path: m.path.clone(),
                        message: format!("packaged file not hashed for verification: {why}"),
                    });
                }
            }
        }
    }
    for m in pending.iter_mut().filter(|m| !m.codes.is_empty()) {
        rpm_codes(m);
    }
    dpkg::finish(&mut pending);
    let (mtime_only, mismatches): (Vec<Mismatch>, Vec<Mismatch>) = pending
        .into_iter()
        .filter(|m| !m.differs.is_empty())
        .partition(|m| !m.codes.is_empty() && m.differs == ["mtime"]);
    out.mismatches = mismatches;
    out.mtime_only = mtime_only;
    out.mismatches.sort_by(|a, b| a.path.cmp(&b.path));
    out.mtime_only.sort_by(|a, b| a.path.cmp(&b.path));
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

/// The `/var/lib/rpm` part of [`inspect`]: read the database (checked: damage goes to
/// [`Packages::damaged`], readable packages are listed), then an offline `rpm -Va`.
#[allow(clippy::too_many_arguments)]
fn rpm(
    tree: &Tree,
    hashes: &HashMap<NodeId, String>,
    ids: &Ids,
    distro: Option<&str>,
    out: &mut Packages,
    owned: &mut [bool],
    watch: &mut OwnerWatch<'_>,
    jobs: &mut Vec<DigestJob>,
    pending: &mut Vec<Mismatch>,
    found_db: &mut bool,
    problems: &mut Vec<Problem>,
) {
    let mut leftover = None;
    for dir in ["/var/lib/rpm", "/usr/lib/sysimage/rpm"] {
        let is_dir = util::resolve(tree, dir).is_some_and(|id| tree.entries(id).is_some());
        if !is_dir {
            continue;
        }
        let src = TreeDb {
            tree,
            dir: dir.to_string(),
        };
        let read = match pkgdb::rpmdb::read_packages_checked(&src) {
            Ok(r) => r,
            Err(pkgdb::Error::NoDatabase) => {
                // rpm's other files without the database: the database was removed or lost
                // (reported below unless the other directory holds the database).
                if let Some(other) = rpm_leftover(tree, dir) {
                    leftover.get_or_insert((dir, other));
                }
                continue;
            }
            Err(e) => {
                rpm_damaged(out, problems, dir, "rpm", e.to_string(), (0, None));
                break;
            }
        };
        *found_db = true;
        let format = match read.backend {
            pkgdb::rpmdb::Backend::Sqlite => "rpm-sqlite",
            pkgdb::rpmdb::Backend::Ndb => "rpm-ndb",
            pkgdb::rpmdb::Backend::Bdb => "rpm-bdb",
        };
        out.database = Some(dir.to_string());
        out.format = Some(format.into());
        let db_path = util::join(dir, read.file);
        let reason = match (read.damage.first(), read.packages.is_empty()) {
            (Some(first), _) => Some(if read.damage.len() > 1 {
                format!("{first} (and {} more problems)", read.damage.len() - 1)
            } else {
                first.to_string()
            }),
            (None, true) => Some(
                "the database holds no package records (an rpm database that exists is never empty on a real system)"
                    .to_string(),
            ),
            (None, false) => None,
        };
        if let Some(reason) = reason {
            for d in &read.damage {
                tracing::warn!(file = %db_path, damage = %d, "rpm database damaged");
            }
            let counts = (read.packages.len() as u64, Some(read.records_unreadable));
            rpm_damaged(out, problems, &db_path, format, reason, counts);
        }
        let ns = rpm_namespace(distro);
        // File requires (`/bin/sh`) are provided by whichever package lists the path.
        let wanted_paths: std::collections::HashSet<String> = read
            .packages
            .iter()
            .flat_map(|p| p.requires())
            .filter(|r| r.starts_with('/'))
            .collect();
        // rpm -V skips the mtime of a path more than one installed package lists.
        let mut lists = Vec::with_capacity(read.packages.len());
        let mut shared: HashMap<String, u32> = HashMap::new();
        for p in &read.packages {
            let files = p.files();
            if let Ok(fs) = &files {
                for f in fs {
                    *shared.entry(f.path.clone()).or_default() += 1;
                }
            }
            lists.push(files);
        }
        let names = Names::new(ids);
        for (p, files) in read.packages.into_iter().zip(lists) {
            if p.is_gpg_pubkey {
                out.gpg_keys
                    .push(format!("gpg-pubkey-{}-{}", p.version, p.release));
                continue;
            }
            let mut info = rpm_info(&p, &ns);
            match files {
                Ok(files) => {
                    info.files = files.len();
                    let label = p.nevra();
                    for f in files {
                        if wanted_paths.contains(&f.path)
                            && info.provides.len() < pkgdb::rpm::MAX_RELATIONS
                        {
                            info.provides.push(f.path.clone());
                        }
                        let id = tree.resolve(f.path.as_bytes(), false).ok();
                        if let Some(id) = id {
                            if let Some(o) = owned.get_mut(id.0 as usize) {
                                *o = true;
                            }
                            watch.note(id, &p.name);
                        }
                        verify_rpm_file(
                            tree,
                            hashes,
                            &names,
                            &f,
                            id,
                            shared.get(&f.path).copied().unwrap_or(0) > 1,
                            &label,
                            out,
                            jobs,
                            pending,
                        );
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
    if let (false, Some((dir, other))) = (*found_db, leftover) {
        let reason = format!(
            "no package database (rpmdb.sqlite, Packages.db or Packages), but rpm's {other} is there"
        );
        rpm_damaged(out, problems, dir, "rpm", reason, (0, None));
    }
}

/// Record an rpm database that could not be read completely (inventory error, problem, damaged).
fn rpm_damaged(
    out: &mut Packages,
    problems: &mut Vec<Problem>,
    path: &str,
    format: &str,
    reason: String,
    counts: (u64, Option<u64>),
) {
    out.error = Some(format!("{path}: {reason}"));
    problems.push(Problem {
        path: path.into(),
        message: reason.clone(),
    });
    out.damaged.push(DamagedSource {
        path: path.into(),
        format: format.into(),
        reason,
        records_read: counts.0,
        records_unreadable: counts.1,
    });
}

/// A file of rpm's database directory other than the database itself (index files, the
/// Berkeley DB environment, the SQLite journal, the lock), if any.
fn rpm_leftover(tree: &Tree, dir: &str) -> Option<String> {
    const NAMES: [&str; 16] = [
        "Name",
        "Basenames",
        "Providename",
        "Requirename",
        "Dirnames",
        "Group",
        "Installtid",
        "Sigmd5",
        "Sha1header",
        "Filedigests",
        "Filemd5s",
        "Pubkeys",
        "Conflictname",
        "Obsoletename",
        "Triggername",
        "Index.db",
    ];
    let id = util::resolve(tree, dir)?;
    let entries = tree.entries(id)?;
    entries.keys().find_map(|k| {
        let n = String::from_utf8_lossy(k);
        (NAMES.contains(&n.as_ref())
            || n.starts_with("__db.")
            || n.starts_with("rpmdb.sqlite-")
            || n == ".rpm.lock")
            .then(|| n.into_owned())
    })
}

/// The inventory entry of one rpm package.
fn rpm_info(p: &pkgdb::Package, ns: &str) -> PackageInfo {
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
    PackageInfo {
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
        requires: p.requires().into_iter().map(|r| vec![r]).collect(),
        provides: p.provides(),
    }
}

/// Offline `rpm -V` of one packaged file: skipped when rpm never installed it (FILESTATES
/// `not installed`, `netshared`), existence only when `replaced`, content checks dropped for
/// `wrong color`; `FILEVERIFYFLAGS` and file type decide the rest (see [`rpm_verify`]). A missing
/// `%ghost` or `%missingok` file is not reported, as rpm prints it only with `-v`.
#[allow(clippy::too_many_arguments)]
fn verify_rpm_file(
    tree: &Tree,
    hashes: &HashMap<NodeId, String>,
    names: &Names<'_>,
    f: &pkgdb::FileEntry,
    id: Option<NodeId>,
    shared: bool,
    label: &str,
    out: &mut Packages,
    jobs: &mut Vec<DigestJob>,
    pending: &mut Vec<Mismatch>,
) {
    use pkgdb::rpm::{fileflags as ff, filestate as fs, verifyflags as vf};
    let fflags = f.flags.unwrap_or(0);
    let mut flags = f.verify_flags;
    match f.state {
        Some(fs::NOTINSTALLED) | Some(fs::NETSHARED) => return,
        Some(fs::REPLACED) => flags = 0,
        Some(fs::WRONGCOLOR) => flags &= !(vf::DIGEST | vf::SIZE | vf::MTIME | vf::RDEV),
        _ => {}
    }
    if shared {
        flags &= !vf::MTIME;
    }
    out.verified_files += 1;
    let mismatch = |differs| Mismatch {
        path: f.path.clone(),
        package: label.to_string(),
        config: f.is_config(),
        differs,
        verify: None,
        codes: "?".into(),
        flag: rpm_flag(fflags),
    };
    let Some(id) = id else {
        if fflags & (ff::MISSINGOK | ff::GHOST) == 0 {
            pending.push(mismatch(vec!["missing".into()]));
        }
        return;
    };
    let mut differs = Vec::new();
    let hash_node = rpm_verify(tree, names, f, id, flags, &mut differs);
    let idx = pending.len();
    if let Some(node) = hash_node {
        let algo = match f.digest_algo {
            pkgdb::rpm::DigestAlgo::Md5 => "md5",
            pkgdb::rpm::DigestAlgo::Sha1 => "sha1",
            pkgdb::rpm::DigestAlgo::Sha224 => "sha224",
            pkgdb::rpm::DigestAlgo::Sha256 => "sha256",
            pkgdb::rpm::DigestAlgo::Sha384 => "sha384",
            pkgdb::rpm::DigestAlgo::Sha512 => "sha512",
            pkgdb::rpm::DigestAlgo::Other(_) => "",
        };
        match &f.digest {
            // rpm: a regular file without a digest in the header fails the digest check.
            None => differs.push("digest".into()),
            Some(_) if algo.is_empty() => out.unverifiable_digests += 1,
            Some(d) if algo == "sha256" && hashes.contains_key(&node) => {
                if hashes.get(&node) != Some(&d.to_ascii_lowercase()) {
                    differs.push("digest".into());
                }
            }
            Some(d) => jobs.push(DigestJob {
                node,
                algo,
                expected: d.to_ascii_lowercase(),
                mismatch: idx,
            }),
        }
    }
    pending.push(mismatch(differs));
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
        assert_eq!(purl_encode("1:2.3+dfsg-1"), "1:2.3%2Bdfsg-1");
        assert_eq!(rpm_namespace(Some("centos")), "centos");
        assert_eq!(rpm_namespace(None), "rpm");
    }
}
