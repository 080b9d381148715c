//! dpkg's side of the package inventory: the status file (and its journal `updates/`), the
//! distroless `status.d/` directory, `info/*.list`, `info/*.md5sums`, `Conffiles` and
//! `diversions`, read from the image through pkgdb's dpkg parsers, and an offline
//! `dpkg --verify` of the packaged files against the image's inodes.
//!
//! Fails closed: a database file that exists but cannot be read completely (cut short, malformed,
//! a duplicate package, a `.list` or `.md5sums` dpkg would refuse) becomes a
//! [`DamagedSource`] with format `dpkg`; the stanzas read before the damage stay in the list.

use std::collections::{HashMap, HashSet};

use pkgdb::dpkg::{self as d, Db, DpkgPackage, FileKind};
use rootfs::{FileType, NodeKind, Tree};

use super::{
    purl_encode, DamagedSource, DigestJob, Mismatch, OwnerWatch, PackageInfo, PackageStatus,
    Packages,
};
use crate::util;
use crate::Problem;

/// dpkg's administrative directory inside the image.
const ADMIN: &str = "/var/lib/dpkg";

/// Everything `inspect` shares with the rpm side.
pub(super) struct Sink<'a, 'w> {
    pub out: &'a mut Packages,
    pub owned: &'a mut [bool],
    pub watch: &'a mut OwnerWatch<'w>,
    pub jobs: &'a mut Vec<DigestJob>,
    pub pending: &'a mut Vec<Mismatch>,
    pub found_db: &'a mut bool,
    pub problems: &'a mut Vec<Problem>,
}

impl Sink<'_, '_> {
    fn damaged(&mut self, path: &str, reason: String, records_read: u64) {
        tracing::warn!(path, %reason, "dpkg database damaged");
        self.problems.push(Problem {
            path: path.to_string(),
            message: reason.clone(),
        });
        if self.out.error.is_none() {
            self.out.error = Some(reason.clone());
        }
        self.out.damaged.push(DamagedSource {
            path: path.to_string(),
            format: "dpkg".into(),
            reason,
            records_read,
            records_unreadable: None,
        });
    }

    /// Read `path` (at most [`d::MAX_STATUS`] bytes): `None` when it does not exist; a file that
    /// exists but cannot be read is damaged.
    fn read(&mut self, tree: &Tree, path: &str, records: u64) -> Option<Vec<u8>> {
        match util::read_file(tree, path, d::MAX_STATUS as u64) {
            Ok(b) => Some(b),
            Err(util::ReadError::Path { .. }) => None,
            Err(e) => {
                self.damaged(path, e.to_string(), records);
                None
            }
        }
    }
}

/// A package's stanza origin: the status file (or its journal), or a distroless `status.d/` file.
fn status_d_name(p: &DpkgPackage) -> Option<&str> {
    p.file
        .strip_prefix(ADMIN)
        .and_then(|r| r.strip_prefix("/status.d/"))
}

/// Read dpkg's database from the image, list its packages and verify their files.
pub(super) fn inspect(tree: &Tree, distro: Option<&str>, s: &mut Sink<'_, '_>) {
    let mut db = Db::new();
    let status_path = format!("{ADMIN}/status");
    let mut any = false;
    if let Some(bytes) = s.read(tree, &status_path, 0) {
        any = true;
        if let Err(e) = db.add_file(&bytes, &status_path, FileKind::Status) {
            let n = db.len() as u64;
            s.damaged(&status_path, e.to_string(), n);
        }
        // dpkg applies its journal on top of the status file.
        let dir = format!("{ADMIN}/updates");
        match d::update_names(&util::list_dir(tree, &dir), &dir) {
            Ok(names) => {
                for n in names {
                    let p = util::join(&dir, &n);
                    let before = db.len() as u64;
                    if let Some(b) = s.read(tree, &p, before) {
                        if let Err(e) = db.add_file(&b, &p, FileKind::Update) {
                            s.damaged(&p, e.to_string(), before);
                        }
                    }
                }
            }
            Err(e) => {
                let n = db.len() as u64;
                s.damaged(&dir, e.to_string(), n);
            }
        }
    } else if tree.resolve(status_path.as_bytes(), false).is_ok() {
        // There but unresolvable (a dangling or looping symlink): dpkg cannot open it either.
        any = true;
        if !util::exists(tree, &status_path) {
            s.damaged(&status_path, format!("{status_path}: cannot be opened"), 0);
        }
    }
    // Distroless: one stanza file per package (plus NAME.md5sums) in status.d/.
    let sd = format!("{ADMIN}/status.d");
    let sd_is_dir = util::resolve(tree, &sd).is_some_and(|id| tree.entries(id).is_some());
    if sd_is_dir {
        any = true;
        for n in util::list_dir(tree, &sd) {
            if n.ends_with(".md5sums") {
                continue;
            }
            let p = util::join(&sd, &n);
            let before = db.len() as u64;
            match s.read(tree, &p, before) {
                Some(b) => {
                    if let Err(e) = db.add_file(&b, &p, FileKind::Status) {
                        s.damaged(&p, e.to_string(), before);
                    }
                }
                // Listed but not found by name: a file name that is not UTF-8.
                None => s.damaged(&p, format!("{p}: cannot be read by its name"), before),
            }
        }
    }
    if !any {
        // Package file lists without any status: the database that says what is installed was
        // removed, which would hide every package.
        let info = format!("{ADMIN}/info");
        let lists = util::list_dir(tree, &info)
            .iter()
            .filter(|n| n.ends_with(".list"))
            .count();
        if lists > 0 {
            *s.found_db = true;
            s.damaged(
                &status_path,
                format!("{status_path} is missing but {info} holds {lists} package file lists"),
                0,
            );
        }
        return;
    }
    *s.found_db = true;
    if s.out.format.is_none() {
        s.out.format = Some("dpkg".into());
        s.out.database = Some(if util::exists(tree, &status_path) {
            status_path.clone()
        } else {
            sd.clone()
        });
    }
    let diversions = read_diversions(tree, s);
    let info_format = util::read_text(tree, &format!("{ADMIN}/info/format")).unwrap_or_default();
    let ns = match distro {
        Some(d) if !d.is_empty() && d != "debian" => purl_encode(d),
        _ => "debian".into(),
    };
    for p in db.packages().into_iter().filter(|p| p.is_listed()) {
        let mut info = package_info(&p, &ns);
        let files = match status_d_name(&p) {
            Some(n) => status_d_files(tree, s, &sd, n),
            None => info_files(tree, s, &p, &info_format),
        };
        match files {
            Ok(f) => verify(tree, s, &p, &f, &diversions, &mut info),
            Err(e) => info.file_list_error = Some(e),
        }
        s.out.list.push(info);
    }
}

fn package_info(p: &DpkgPackage, ns: &str) -> PackageInfo {
    let mut purl = format!(
        "pkg:deb/{ns}/{}@{}",
        purl_encode(&p.name),
        purl_encode(&p.version)
    );
    if let Some(a) = &p.arch {
        purl.push_str(&format!("?arch={}", purl_encode(a)));
    }
    PackageInfo {
        manager: "dpkg".into(),
        name: p.name.clone(),
        epoch: None,
        version: p.version.clone(),
        release: None,
        arch: p.arch.clone(),
        source: (p.source != p.name || p.source_version != p.version)
            .then(|| format!("{} ({})", p.source, p.source_version)),
        vendor: p
            .fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("maintainer"))
            .map(|(_, v)| v.clone()),
        license: None,
        install_time: None,
        purl,
        files: 0,
        file_list_error: None,
        status: Some(PackageStatus {
            abbrev: p.state.abbrev(),
            want: p.state.want().into(),
            flag: p.state.eflag().into(),
            state: p.state.state().into(),
        }),
        requires: p.depends(),
        provides: p.provides(),
    }
}

fn read_diversions(
    tree: &Tree,
    s: &mut Sink<'_, '_>,
) -> HashMap<Vec<u8>, (Vec<u8>, Option<String>)> {
    let p = format!("{ADMIN}/diversions");
    let Some(b) = s.read(tree, &p, 0) else {
        return HashMap::new();
    };
    match d::parse_diversions(&b, &p) {
        Ok(v) => v.into_iter().map(|x| (x.from, (x.to, x.package))).collect(),
        Err(e) => {
            s.damaged(&p, e.to_string(), 0);
            HashMap::new()
        }
    }
}

/// A package's files: paths in `.list` order and the md5 of those `.md5sums` lists.
struct Files {
    list: Vec<Vec<u8>>,
    md5: HashMap<Vec<u8>, String>,
}

fn md5s(tree: &Tree, s: &mut Sink<'_, '_>, path: &str) -> Result<HashMap<Vec<u8>, String>, String> {
    let Some(b) = s.read(tree, path, 0) else {
        return Ok(HashMap::new());
    };
    match d::parse_md5sums(&b, path) {
        Ok(v) => Ok(v.into_iter().map(|(h, p)| (p, h)).collect()),
        Err(e) => {
            s.damaged(path, e.to_string(), 0);
            Err(e.to_string())
        }
    }
}

fn info_files(
    tree: &Tree,
    s: &mut Sink<'_, '_>,
    p: &DpkgPackage,
    info_format: &str,
) -> Result<Files, String> {
    let base = format!("{ADMIN}/info/{}", d::infodb_name(p, info_format));
    let list_path = format!("{base}.list");
    let list = match s.read(tree, &list_path, 0) {
        Some(b) => match d::parse_list(&b, &list_path) {
            Ok(l) => l,
            Err(e) => {
                s.damaged(&list_path, e.to_string(), 0);
                return Err(e.to_string());
            }
        },
        None => {
            if p.is_installed() {
                // dpkg warns and assumes no files; the files then show as unowned.
                let msg = format!(
                    "package {} is {} but {list_path} is missing: its files cannot be verified",
                    p.name,
                    p.state.state()
                );
                s.problems.push(Problem {
                    path: list_path.clone(),
                    message: msg.clone(),
                });
                return Err(msg);
            }
            Vec::new()
        }
    };
    let md5 = md5s(tree, s, &format!("{base}.md5sums"))?;
    Ok(Files { list, md5 })
}

/// Distroless: no `.list`; the package's files are the paths its `status.d/NAME.md5sums` lists.
fn status_d_files(
    tree: &Tree,
    s: &mut Sink<'_, '_>,
    dir: &str,
    name: &str,
) -> Result<Files, String> {
    let path = util::join(dir, &format!("{name}.md5sums"));
    let md5 = md5s(tree, s, &path)?;
    let mut list: Vec<Vec<u8>> = md5.keys().cloned().collect();
    list.sort();
    Ok(Files { list, md5 })
}

/// Whether `h` is what dpkg's md5 of a file could be (it compares the text as written).
fn is_md5_text(h: &str) -> bool {
    h.len() == 32 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Ownership and `dpkg --verify` of one package's files, as dpkg checks them: a file with a
/// digest (its `.md5sums` line, else its `Conffiles` hash; a file diverted by another package
/// is checked at its diverted-to name) is `missing` when absent, `M` when not a regular file, `5` when its contents' md5 differs.
fn verify(
    tree: &Tree,
    s: &mut Sink<'_, '_>,
    p: &DpkgPackage,
    files: &Files,
    diversions: &HashMap<Vec<u8>, (Vec<u8>, Option<String>)>,
    info: &mut PackageInfo,
) {
    let label = format!("{}_{}", p.name, p.version);
    let conf: HashMap<&[u8], &str> = p
        .conffiles
        .iter()
        .map(|c| (c.raw_path.as_slice(), c.hash.as_str()))
        .collect();
    let mut seen = HashSet::new();
    for path in &files.list {
        if path.as_slice() == b"/." || !seen.insert(path.as_slice()) {
            continue;
        }
        info.files += 1;
        let lstat = tree.resolve(path, false).ok();
        if let Some(id) = lstat {
            if let Some(o) = s.owned.get_mut(id.0 as usize) {
                *o = true;
            }
            s.watch.note(id, &p.name);
        }
        // A file diverted by another package (or locally) is checked, as dpkg does, at the
        // name it was diverted to, against this package's `.md5sums` digest.
        let diverted = diversions
            .get(path)
            .filter(|(_, by)| by.as_deref() != Some(p.name.as_str()))
            .map(|(to, _)| to);
        let (path, hash, config) = match diverted {
            Some(to) => {
                let Some(h) = files.md5.get(path) else {
                    continue;
                };
                (to, h.as_str(), false)
            }
            None => {
                let Some(h) = files
                    .md5
                    .get(path)
                    .map(String::as_str)
                    .or_else(|| conf.get(path.as_slice()).copied())
                else {
                    continue;
                };
                (path, h, conf.contains_key(path.as_slice()))
            }
        };
        let lstat = if diverted.is_some() {
            tree.resolve(path, false).ok()
        } else {
            lstat
        };
        s.out.verified_files += 1;
        let shown = util::show(path);
        let Some(id) = lstat else {
            s.pending.push(Mismatch {
                verify: Some(verify_line("missing  ", config, &shown)),
                path: shown,
                package: label.clone(),
                config,
                differs: vec!["missing".into()],
                codes: String::new(),
                flag: String::new(),
            });
            continue;
        };
        let mut differs = Vec::new();
        let mut result = *b"?????????";
        if tree.node(id).file_type() != FileType::Regular {
            differs.push("type".to_string());
            result[1] = b'M';
        }
        let target = tree.resolve(path, true).ok();
        let idx = s.pending.len();
        match target {
            Some(t) if matches!(tree.node(t).kind, NodeKind::Regular(_)) => {
                if is_md5_text(hash) {
                    // '.' unless the digest job finds a difference (then '5', see finish()).
                    result[2] = b'.';
                    s.jobs.push(DigestJob {
                        node: t,
                        algo: "md5",
                        expected: hash.to_string(),
                        mismatch: idx,
                    });
                } else {
                    differs.push("digest".into());
                    result[2] = b'5';
                }
            }
            // A directory or device where a file was packaged: dpkg stops with an error; the
            // contents cannot match.
            Some(_) => {
                differs.push("digest".into());
                result[2] = b'5';
            }
            // A symlink to nothing: dpkg cannot open it and leaves the digest unchecked.
            None => {}
        }
        let line = std::str::from_utf8(&result)
            .unwrap_or("?????????")
            .to_string();
        s.pending.push(Mismatch {
            verify: Some(verify_line(&line, config, &shown)),
            path: shown,
            package: label.clone(),
            config,
            differs,
            codes: String::new(),
            flag: String::new(),
        });
    }
}

/// `dpkg --verify`'s line: nine result characters, the conffile mark, the path.
fn verify_line(result: &str, config: bool, path: &str) -> String {
    format!("{result} {} {path}", if config { 'c' } else { ' ' })
}

/// Put the digest results into the dpkg verify lines (`.` becomes `5` where the digest job
/// found a difference).
pub(super) fn finish(mismatches: &mut [Mismatch]) {
    for m in mismatches {
        if let Some(line) = &mut m.verify {
            if m.differs.iter().any(|d| d == "digest") && line.as_bytes().get(2) == Some(&b'.') {
                line.replace_range(2..3, "5");
            }
        }
    }
}
