//! Recipes turned into reproducible wafer bundles.
//!
//! [`build`] reads a recipe ([`recipe`], documented in docs/recipe.md), opens the pinned base
//! into a [`rootfs::Tree`], applies the steps in order ([`steps`]), writes the ext image with
//! rootfs's writer, compresses it to seekable zstd, computes the digests (sha256, dm-verity) and
//! writes the bundle ([`output`], documented in docs/bundle.md). Nothing is mounted, nothing
//! runs as root, nothing of the build host ends up in the bundle.

pub mod confine;
pub mod error;
pub mod inspect;
pub mod names;
pub mod output;
pub mod recipe;
pub mod steps;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rootfs::{NodeKind, Timestamp, Tree};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use error::{BuildError, Result};
pub use output::Manifest;
pub use recipe::Recipe;
pub use rootfs::atomic::Replace;
pub use steps::StepReport;

/// Phases with byte progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Reading and checking the base.
    Base,
    /// Writing the ext image.
    Image,
    /// Compressing to seekable zstd, hashing in the same pass (sha256 and dm-verity of the raw
    /// image, sha256 of the compressed file).
    Compress,
}

/// A progress event. Serializes as `{"event": "...", ...}` for `--json` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A step begins.
    StepStarted {
        /// 1-based step number (0: the default purge).
        index: usize,
        /// Number of steps.
        total: usize,
        /// Step type.
        kind: String,
        /// Recipe line.
        line: usize,
    },
    /// A step ended.
    StepFinished {
        /// 1-based step number.
        index: usize,
        /// Step type.
        kind: String,
        /// Paths added.
        added: usize,
        /// Paths changed.
        changed: usize,
        /// Paths removed.
        removed: usize,
    },
    /// A byte-counted phase begins.
    PhaseStarted {
        /// Which.
        phase: Phase,
        /// Bytes to process (0 if unknown).
        total: u64,
    },
    /// Bytes processed so far in a phase.
    Bytes {
        /// Which.
        phase: Phase,
        /// Bytes done.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// A phase ended.
    PhaseFinished {
        /// Which.
        phase: Phase,
    },
}

/// Receives progress events; the builder itself never prints.
pub trait Progress: Sync {
    /// One event.
    fn event(&self, event: &Event);
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: &Event) {}
}

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The bundle directory to create (must not exist, or be empty, unless `replace`). It is
    /// written as a temporary sibling folder and renamed into place when complete
    /// ([`bundle::BundleWriter`]).
    pub out_dir: PathBuf,
    /// Whether an existing bundle at `out_dir` is replaced (`--force`): refused before anything
    /// is read with [`Replace::No`]; with [`Replace::Yes`] exchanged for the new one when that
    /// is complete (a failed build leaves it as it was).
    pub replace: Replace,
    /// Build epoch; `None`: `SOURCE_DATE_EPOCH` from the environment, then the recipe's
    /// `wafer.epoch`, then the base's newest modification time.
    pub source_date_epoch: Option<i64>,
    /// Worker threads for hashing and compression (0: all cores). Never changes the output.
    pub threads: usize,
    /// Also keep the raw image as `disk.img` in the bundle.
    pub keep_raw: bool,
    /// Host paths the operator allows `[base] path` to name outside the recipe's folder
    /// (`--allow-host-path`): the base must lie in or beneath one of them, and is then read
    /// confined beneath it. Never taken from the recipe.
    pub allow_host_paths: Vec<PathBuf>,
    /// Budgets for recipe inputs.
    pub limits: Limits,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            out_dir: PathBuf::new(),
            replace: Replace::No,
            source_date_epoch: None,
            threads: 0,
            keep_raw: false,
            allow_host_paths: Vec::new(),
            limits: Limits::default(),
        }
    }
}

impl BuildOptions {
    /// Options writing to `out_dir` (an existing non-empty one refused), everything else
    /// default.
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        BuildOptions {
            out_dir: out_dir.into(),
            ..Default::default()
        }
    }
}

/// A finished build whose bundle is complete in its temporary folder ([`Staged::path`]) but
/// not yet under its final name: the caller may add to it (`wafer build --sign` writes the
/// provenance) before [`Staged::commit`]. Dropped without a commit, the temporary folder is
/// removed and `out_dir` is as it was.
#[derive(Debug)]
pub struct Staged {
    /// What the build did.
    pub report: BuildReport,
    writer: bundle::BundleWriter,
}

impl Staged {
    /// The temporary folder holding the complete bundle.
    pub fn path(&self) -> &Path {
        self.writer.path()
    }

    /// Where the bundle goes (`out_dir`).
    pub fn dest(&self) -> &Path {
        self.writer.dest()
    }

    /// Moves the bundle into place (see [`bundle::BundleWriter::commit`]); returns the report.
    pub fn commit(self) -> Result<BuildReport> {
        self.writer
            .commit()
            .map_err(|e| BuildError::Output(e.to_string()))?;
        Ok(self.report)
    }
}

/// Budgets bounding what a recipe can make the build read into memory or produce. Exceeding one
/// stops the build with an error naming the input and the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest output of one `template` step, in bytes (`--max-template-output`, default 16 MiB).
    pub template_file: u64,
    /// Largest output of all `template` steps of a build together (`--max-template-total`,
    /// default 256 MiB).
    pub template_total: u64,
    /// Most bytes of recipe files (`copy` sources up to 16 MiB each) held in memory by one build
    /// (`--max-input-memory`, default 1 GiB); larger files are read from the open file when the
    /// image is written.
    pub input_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            template_file: 16 << 20,
            template_total: 256 << 20,
            input_memory: 1 << 30,
        }
    }
}

/// What a build did; also written as `build-report.json` (without host paths).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BuildReport {
    /// Wafer name.
    pub name: String,
    /// Wafer version.
    pub version: String,
    /// Each step's report, in order (the default purge last, index 0, if the recipe has none).
    pub steps: Vec<StepReport>,
    /// Host files the steps read (recipe-relative path -> sha256).
    pub inputs: BTreeMap<String, String>,
    /// Packages installed by rpm steps.
    pub packages_added: Vec<steps::PackageAdded>,
    /// Scriptlets the rpm steps did not run.
    pub scriptlets_skipped: Vec<String>,
    /// Things worth a look that did not stop the build.
    pub warnings: Vec<String>,
    /// The manifest written.
    #[serde(skip)]
    pub manifest: Option<Manifest>,
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<[u8; 32]> {
    let mut f = std::fs::File::open(path).map_err(|e| BuildError::io(path, e))?;
    sha256_read(&mut f).map_err(|e| BuildError::io(path, e))
}

/// sha256 of everything `r` yields, streamed in 1 MiB reads (std::io::copy would use 8 KiB:
/// ~130 read calls per MiB of a GB-sized base).
pub fn sha256_read(r: &mut impl std::io::Read) -> std::io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(h.finalize().into())
}

/// The digest pinning a `dir` base (docs/recipe.md, "Pinning a `dir` base"): sha256 over
/// `wafer dir pin v2 LF` and one record per entry in walk (name) order, every variable field
/// length-prefixed (`LEN:BYTES`): path, type, permission bits (octal), uid, gid, mtime
/// (`SECONDS.NANOSECONDS`), extended attributes (count, then name and value of each, in name
/// order), and the payload: the sha256 of a regular file's bytes, a symlink's target,
/// `major:minor` of a device, or `=PATH` for the second and later names of a hard-linked file
/// (PATH its first name). Everything a copy keeps and the image is made from; never atime,
/// ctime, inode numbers or read order.
pub fn tree_digest(tree: &Tree) -> Result<String> {
    Ok(tree_digests(tree)?.current)
}

/// The digests of a `dir` base: the current one ([`tree_digest`]) and the one recipes pinned
/// before issue 12 (sha256 over `path NUL type NUL perm-octal NUL uid NUL gid NUL mtime-seconds
/// NUL payload LF` per entry; no xattrs, sub-second times or hard-link structure), still
/// accepted with a warning. File contents are read once for both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeDigests {
    /// The digest to pin.
    pub current: String,
    /// The earlier digest.
    pub legacy: String,
}

/// Both digests of a tree (see [`TreeDigests`]).
pub fn tree_digests(tree: &Tree) -> Result<TreeDigests> {
    use std::collections::HashMap;
    fn field(h: &mut Sha256, b: &[u8]) {
        h.update(format!("{}:", b.len()).as_bytes());
        h.update(b);
    }
    let mut v1 = Sha256::new();
    let mut v2 = Sha256::new();
    v2.update(b"wafer dir pin v2\n");
    let mut err = None;
    // Content digests by node (a hard-linked file is read once) and the first name of each
    // non-directory node.
    let mut content: HashMap<rootfs::NodeId, String> = HashMap::new();
    let mut first_name: HashMap<rootfs::NodeId, Vec<u8>> = HashMap::new();
    tree.walk(|p, id| {
        if err.is_some() {
            return;
        }
        let n = tree.node(id);
        let payload = match &n.kind {
            NodeKind::Regular(c) => match content.get(&id) {
                Some(d) => d.clone(),
                None => {
                    let mut fh = Sha256::new();
                    match c.reader().and_then(|mut r| std::io::copy(&mut r, &mut fh)) {
                        Ok(_) => {
                            let d = hex::encode(fh.finalize());
                            content.insert(id, d.clone());
                            d
                        }
                        Err(e) => {
                            err = Some(BuildError::Base {
                                path: String::from_utf8_lossy(p).into_owned(),
                                message: e.to_string(),
                            });
                            return;
                        }
                    }
                }
            },
            NodeKind::Symlink(t) => String::from_utf8_lossy(t).into_owned(),
            NodeKind::CharDevice(d) | NodeKind::BlockDevice(d) => {
                format!("{}:{}", d.major, d.minor)
            }
            _ => String::new(),
        };
        let kind = n.file_type().ls_char();
        v1.update(p);
        v1.update(
            format!(
                "\0{}\0{:o}\0{}\0{}\0{}\0{}\n",
                kind, n.meta.perm, n.meta.uid, n.meta.gid, n.meta.mtime.sec, payload
            )
            .as_bytes(),
        );
        field(&mut v2, p);
        field(&mut v2, kind.to_string().as_bytes());
        field(&mut v2, format!("{:o}", n.meta.perm).as_bytes());
        field(&mut v2, n.meta.uid.to_string().as_bytes());
        field(&mut v2, n.meta.gid.to_string().as_bytes());
        field(
            &mut v2,
            format!("{}.{:09}", n.meta.mtime.sec, n.meta.mtime.nsec).as_bytes(),
        );
        field(&mut v2, n.meta.xattrs.len().to_string().as_bytes());
        for (k, v) in &n.meta.xattrs {
            field(&mut v2, k);
            field(&mut v2, v);
        }
        let is_dir = matches!(n.kind, NodeKind::Directory(_));
        match (is_dir, first_name.get(&id)) {
            (false, Some(first)) => {
                let mut link = b"=".to_vec();
                link.extend_from_slice(first);
                field(&mut v2, &link);
            }
            _ => {
                if !is_dir {
                    first_name.insert(id, p.to_vec());
                }
                match &n.kind {
                    NodeKind::Symlink(t) => field(&mut v2, t),
                    _ => field(&mut v2, payload.as_bytes()),
                }
            }
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(TreeDigests {
            current: hex::encode(v2.finalize()),
            legacy: hex::encode(v1.finalize()),
        }),
    }
}

fn newest_mtime(tree: &Tree) -> i64 {
    let mut m = 0i64;
    tree.walk(|_, id| m = m.max(tree.node(id).meta.mtime.sec));
    m
}

/// Normalize `.` and `..` in an absolute path without looking at the filesystem.
fn lexical_normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Where `[base] path` is read from: the root it is confined beneath, and its path there.
/// A relative path without `..` is confined beneath the recipe's folder; anything else only
/// when it lies in or beneath a host path the operator allowed (`--allow-host-path`).
fn base_location(recipe: &Recipe, allowed: &[PathBuf]) -> Result<(confine::Root, String)> {
    let base = &recipe.doc.base;
    let p = base.path.get_ref();
    let dir = recipe.dir();
    let inside = !p.is_empty() && !p.starts_with('/') && !p.split('/').any(|c| c == "..");
    if inside {
        let root = confine::Root::open(&dir, "the recipe's folder")
            .map_err(|e| BuildError::io(&dir, e))?;
        return Ok((root, p.clone()));
    }
    if allowed.is_empty() {
        return Err(recipe.err_at(
            base.path.span(),
            format!(
                "base.path '{p}' must be a relative path inside the recipe's folder (no leading '/', no '..'); \
                 a base elsewhere on the host needs the operator's --allow-host-path"
            ),
        ));
    }
    let dir = std::fs::canonicalize(&dir).map_err(|e| BuildError::io(&dir, e))?;
    let wanted = lexical_normalize(&dir.join(p));
    for a in allowed {
        let ca = std::fs::canonicalize(a).map_err(|source| BuildError::Io {
            path: format!("--allow-host-path {}", a.display()),
            source,
        })?;
        let Ok(rest) = wanted.strip_prefix(&ca) else {
            continue;
        };
        let (root_dir, rel) = match (rest.as_os_str().is_empty(), ca.parent(), ca.file_name()) {
            (true, Some(parent), Some(name)) => {
                (parent.to_path_buf(), name.to_string_lossy().into_owned())
            }
            (true, _, _) => (ca.clone(), ".".to_string()),
            (false, _, _) => (ca.clone(), rest.to_string_lossy().into_owned()),
        };
        let label = format!("the allowed host path {}", ca.display());
        let root =
            confine::Root::open(&root_dir, label).map_err(|e| BuildError::io(&root_dir, e))?;
        tracing::info!(base = %wanted.display(), allowed = %ca.display(), "base outside the recipe's folder, allowed by the operator");
        return Ok((root, rel));
    }
    let list: Vec<String> = allowed.iter().map(|a| a.display().to_string()).collect();
    Err(recipe.err_at(
        base.path.span(),
        format!(
            "base.path '{p}' is outside the recipe's folder and not within any --allow-host-path ({})",
            list.join(", ")
        ),
    ))
}

/// Open the base, checking its kind and pinned digest. The base is resolved confined
/// ([`base_location`], [`confine`]) before anything of it is read, so no message ever shows the
/// digest of something the recipe may not read; it is hashed and parsed through the descriptor
/// opened then (the parsers get `/proc/self/fd/N`, which reopens that very file). Returns the
/// descriptor too: a `dir` base's files are read through it until the image is written. A
/// `dir` base pinned by its earlier digest adds a warning.
fn open_base(
    recipe: &Recipe,
    opts: &BuildOptions,
    progress: &dyn Progress,
    warnings: &mut Vec<String>,
) -> Result<(Tree, String, std::os::fd::OwnedFd)> {
    use std::os::fd::{AsFd, OwnedFd};
    let base = &recipe.doc.base;
    let shown = base.path.get_ref().clone();
    let kind = *base.kind.get_ref();
    progress.event(&Event::PhaseStarted {
        phase: Phase::Base,
        total: 0,
    });
    if !Path::new("/proc/self/fd").is_dir() {
        return Err(BuildError::Base {
            path: shown,
            message: "/proc is not mounted: the base is read through /proc/self/fd".into(),
        });
    }
    let (root, rel) = base_location(recipe, &opts.allow_host_paths)?;
    let refused = |e: confine::ConfineError| recipe.err_at(base.path.span(), format!("base: {e}"));
    let at = root.locate(&rel, true).map_err(refused)?;
    let regular_in = |dir: std::os::fd::BorrowedFd<'_>, name: &std::ffi::CStr| {
        confine::stat_at(dir, name)
            .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
            .unwrap_or(false)
    };
    let (held, detected): (OwnedFd, bundle::source::SourceKind) = if at.stat.st_mode & libc::S_IFMT
        == libc::S_IFDIR
    {
        let d =
            confine::open_dir_at(at.dir.as_fd(), &at.name, &at.stat, &shown).map_err(refused)?;
        let k = if regular_in(d.as_fd(), c"wafer.json") && regular_in(d.as_fd(), c"disk.img.zst") {
            bundle::source::SourceKind::Bundle
        } else {
            bundle::source::SourceKind::Directory
        };
        (d, k)
    } else {
        let (f, _) = confine::open_regular_at(at.dir.as_fd(), &at.name, &at.stat, &shown)
            .map_err(refused)?;
        let fd = OwnedFd::from(f);
        let proc = confine::fd_path(fd.as_fd());
        let k = rootfs::open::detect(&proc).map(Into::into).map_err(|e| {
            let m = e.to_string().replace(&proc.display().to_string(), &shown);
            recipe.err_at(base.path.span(), format!("base: {m}"))
        })?;
        (fd, k)
    };
    let proc = confine::fd_path(held.as_fd());
    let unproc = |m: String| m.replace(&proc.display().to_string(), &shown);
    let matches = matches!(
        (kind, detected),
        (recipe::BaseKind::Tar, bundle::source::SourceKind::Tar(_))
            | (recipe::BaseKind::Dir, bundle::source::SourceKind::Directory)
            | (recipe::BaseKind::Ext, bundle::source::SourceKind::Ext)
            | (recipe::BaseKind::Wafer, bundle::source::SourceKind::Bundle)
    );
    if !matches {
        return Err(recipe.err_at(
            base.kind.span(),
            format!("base.kind is {kind:?} but {shown} holds {detected:?}"),
        ));
    }
    let pinned = base.sha256.get_ref().clone();
    let mismatch = |actual: String| BuildError::BaseDigest {
        file: recipe.file.display().to_string(),
        line: recipe.line(base.sha256.span()),
        path: shown.clone(),
        expected: pinned.clone(),
        actual,
    };
    let io_err = |what: &str, e: std::io::Error| BuildError::Base {
        path: shown.clone(),
        message: format!("{what}: {e}"),
    };
    let base_err = |e: &dyn std::fmt::Display| BuildError::Base {
        path: shown.clone(),
        message: unproc(e.to_string()),
    };
    // Files are checked before they are parsed: a wrong base is never read.
    let tree = match kind {
        recipe::BaseKind::Tar | recipe::BaseKind::Ext => {
            let mut f = std::fs::File::from(held.try_clone().map_err(|e| io_err("dup", e))?);
            let d = hex::encode(sha256_read(&mut f).map_err(|e| io_err("read", e))?);
            if d != pinned {
                return Err(mismatch(d));
            }
            rootfs::open::open_source(&proc, &rootfs::open::OpenOptions::default())
                .map_err(|e| base_err(&e))?
                .tree
        }
        recipe::BaseKind::Wafer => {
            let name = c"disk.img.zst";
            let shown_zst = format!("{shown}/disk.img.zst");
            let st = confine::stat_at(held.as_fd(), name).map_err(|e| io_err("disk.img.zst", e))?;
            let (mut f, _) =
                confine::open_regular_at(held.as_fd(), name, &st, &shown_zst).map_err(refused)?;
            let d = hex::encode(sha256_read(&mut f).map_err(|e| io_err("read", e))?);
            if d != pinned {
                return Err(mismatch(d));
            }
            let zproc = confine::fd_path(f.as_fd());
            let unz = |m: String| m.replace(&zproc.display().to_string(), &shown_zst);
            let src = rootfs::open::ZseekSource::open(&zproc).map_err(|e| BuildError::Base {
                path: shown.clone(),
                message: unz(e.to_string()),
            })?;
            rootfs::ext::read_image(std::sync::Arc::new(src), &Default::default())
                .map_err(|e| BuildError::Base {
                    path: shown.clone(),
                    message: unz(e.to_string()),
                })?
                .tree
        }
        recipe::BaseKind::Dir => {
            // Only what a copy keeps reaches the tree: atime and ctime become the mtime (as a
            // tar member's without pax times), so reading the tree, a no-op chmod or `cp -a`
            // changes neither the pin nor the image.
            let dir_opts = rootfs::dir::DirOptions {
                host_times: false,
                ..Default::default()
            };
            let tree = rootfs::dir::read_dir(&proc, &dir_opts).map_err(|e| base_err(&e))?;
            let d = tree_digests(&tree).map_err(|e| base_err(&e))?;
            if d.current != pinned {
                if d.legacy != pinned {
                    return Err(mismatch(d.current));
                }
                warnings.push(format!(
                    "base {shown}: pinned by its earlier digest, which does not cover extended \
                     attributes, sub-second modification times or hard links; pin sha256 = \"{}\" \
                     instead (docs/recipe.md, \"Pinning a `dir` base\")",
                    d.current
                ));
            }
            tree
        }
    };
    progress.event(&Event::PhaseFinished { phase: Phase::Base });
    Ok((tree, pinned, held))
}

fn env_epoch() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
}

/// The ext profile for an OS when the recipe names none: the enterprise Linux release's, Fedora's,
/// Debian 12's for Debian 9 and later and Ubuntu 18.04 and later (and for any other OS whose
/// os-release `ID_LIKE` says debian or ubuntu), `el7` otherwise.
fn default_profile(os: &inspect::OsInfo, id_like: &[String]) -> &'static str {
    let major: u32 = os
        .version
        .split('.')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let debian_like = id_like.iter().any(|w| w == "debian" || w == "ubuntu");
    match os.id.as_str() {
        "fedora" => "fedora",
        // Debian 9 (e2fsprogs 1.43.4) first made metadata_csum and 64bit by default; its
        // version is empty on testing/sid, which are newer still.
        "debian" if major >= 9 || major == 0 => "debian12",
        "debian" => "el7",
        "ubuntu" if major >= 18 || major == 0 => "debian12",
        "ubuntu" => "el7",
        _ if debian_like => "debian12",
        _ => match major {
            3 | 4 => "el4",
            5 => "el5",
            6 => "el6",
            7 => "el7",
            8 => "el8",
            9 | 10 => "el9",
            _ => "el7",
        },
    }
}

/// Build the bundle for the recipe at `recipe_path` into `opts.out_dir`.
pub fn build(
    recipe_path: &Path,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuildReport> {
    stage(recipe_path, opts, progress)?.commit()
}

/// Build from an already parsed recipe.
pub fn build_recipe(
    recipe: &Recipe,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuildReport> {
    stage_recipe(recipe, opts, progress)?.commit()
}

/// Build the bundle for the recipe at `recipe_path` into its temporary folder, without moving
/// it into place ([`Staged`]).
pub fn stage(recipe_path: &Path, opts: &BuildOptions, progress: &dyn Progress) -> Result<Staged> {
    let recipe = Recipe::load(recipe_path)?;
    stage_recipe(&recipe, opts, progress)
}

/// [`stage`] from an already parsed recipe.
pub fn stage_recipe(
    recipe: &Recipe,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<Staged> {
    let doc = &recipe.doc;
    // Refused before the base is read; the writer checks again when it starts, and at the
    // commit.
    bundle::BundleWriter::check_dest(&opts.out_dir, opts.replace)
        .map_err(|e| BuildError::Output(e.to_string()))?;
    let recipe_sha = hex::encode(Sha256::digest(recipe.text.as_bytes()));
    // Held until the image is written: a `dir` base's files are read through it.
    let mut warnings = Vec::new();
    let (mut tree, base_sha, _base_fd) = open_base(recipe, opts, progress, &mut warnings)?;
    let epoch = opts
        .source_date_epoch
        .or_else(env_epoch)
        .or(doc.wafer.epoch)
        .unwrap_or_else(|| newest_mtime(&tree));

    let mut vars = doc.vars.clone();
    vars.insert("wafer_name".into(), doc.wafer.name.get_ref().clone());
    vars.insert("wafer_version".into(), doc.wafer.version.get_ref().clone());
    vars.insert("wafer_vo".into(), doc.wafer.vo.get_ref().clone());
    let dir = recipe.dir();
    let ctx = steps::StepContext {
        root: confine::Root::open(&dir, "the recipe's folder")
            .map_err(|e| BuildError::io(&dir, e))?,
        limits: opts.limits,
        template_bytes: Default::default(),
        memory_bytes: Default::default(),
        held_files: Default::default(),
        epoch: Timestamp::from_secs(epoch),
        vars,
        inputs: Default::default(),
        resolv_conf_from_recipe: Default::default(),
    };

    // Steps, then the default purge if the recipe has no purge step.
    let mut plan: Vec<(usize, usize, recipe::Step)> = doc
        .step
        .iter()
        .enumerate()
        .map(|(i, s)| (i + 1, recipe.line(s.span()), s.get_ref().clone()))
        .collect();
    if !plan
        .iter()
        .any(|(_, _, s)| matches!(s, recipe::Step::Purge { .. }))
    {
        plan.push((
            0,
            0,
            recipe::Step::Purge {
                keep: vec![],
                enabled: true,
            },
        ));
    }
    let total = plan.len();
    let mut reports = Vec::with_capacity(total);
    for (index, line, step) in &plan {
        progress.event(&Event::StepStarted {
            index: *index,
            total,
            kind: step.kind().into(),
            line: *line,
        });
        let mut r = steps::apply(&mut tree, step, &ctx).map_err(|e| BuildError::Step {
            file: recipe.file.display().to_string(),
            line: *line,
            index: *index,
            kind: step.kind(),
            message: e.0,
        })?;
        r.index = *index;
        r.line = *line;
        progress.event(&Event::StepFinished {
            index: *index,
            kind: step.kind().into(),
            added: r.added.len(),
            changed: r.changed.len(),
            removed: r.removed.len(),
        });
        reports.push(r);
    }
    let inputs = ctx.inputs.borrow().clone();

    // Facts from the finished tree.
    let os = inspect::detect_os(&tree);
    let arch = inspect::detect_arch(&tree);
    let req = &doc.requirements;
    let arch = match (&req.arch, arch) {
        (Some(decl), Some(found)) => {
            let d = inspect::normalize_arch(decl.get_ref()).unwrap_or("");
            if d != found {
                return Err(recipe.err_at(
                    decl.span(),
                    format!(
                        "requirements.arch is {} but the image's programs are built for {found}",
                        decl.get_ref()
                    ),
                ));
            }
            found.to_string()
        }
        (Some(decl), None) => {
            warnings.push("no ELF programs found to confirm the declared architecture".into());
            inspect::normalize_arch(decl.get_ref())
                .unwrap_or("")
                .to_string()
        }
        (None, Some(found)) => found.to_string(),
        (None, None) => {
            warnings.push("architecture unknown: no ELF programs found and none declared".into());
            "unknown".to_string()
        }
    };
    let boot = resolve_boot(recipe, &tree)?;
    match &boot {
        None => warnings
            .push("no kernel in /boot and none named in [boot]: the site must supply one".into()),
        Some(b) => {
            let (flavour, why) = inspect::detect_kernel_flavour(&tree, &b.kernel);
            tracing::info!(kernel = %b.kernel, flavour = flavour.as_str(), "guest kernel flavour: {why}");
            let other = match flavour {
                inspect::KernelFlavour::Xenlinux => "hvc0",
                inspect::KernelFlavour::Pvops => "xvc0",
            };
            if let Some(c) = &doc.boot.cmdline {
                if c.split_whitespace().any(|w| {
                    w == format!("console={other}") || w.starts_with(&format!("console={other},"))
                }) {
                    warnings.push(format!(
                        "boot.cmdline names console {other}, but {} is a {} kernel ({why}), whose console is {}: deploy writes {}",
                        b.kernel,
                        flavour.as_str(),
                        flavour.console(),
                        flavour.console()
                    ));
                }
            }
        }
    }
    // dpkg's database is the native one only on a Debian-family base: an enterprise-Linux base
    // with a stray /var/lib/dpkg is summarised from its rpm database (or not at all), as rpm
    // would list it; the vetter still reads every database it finds, and fails closed on it.
    let debian_family = matches!(os.id.as_str(), "debian" | "ubuntu")
        || inspect::os_id_like(&tree)
            .iter()
            .any(|w| w == "debian" || w == "ubuntu");
    let packages =
        inspect::packages(&tree, debian_family).map_err(|e| BuildError::Output(e.to_string()))?;

    // Image.
    let profile = doc
        .output
        .profile
        .as_ref()
        .map(|p| p.get_ref().clone())
        .unwrap_or_else(|| default_profile(&os, &inspect::os_id_like(&tree)).to_string());
    let sizing = match (&doc.output.size, &doc.output.headroom) {
        (Some(s), _) => image::Sizing::Fixed(
            recipe::parse_size(s.get_ref()).map_err(|m| recipe.err_at(s.span(), m))?,
        ),
        (None, Some(h)) => {
            match recipe::parse_headroom(h.get_ref()).map_err(|m| recipe.err_at(h.span(), m))? {
                recipe::Headroom::Bytes(b) => image::Sizing::Extra(b),
                recipe::Headroom::Percent(p) => image::Sizing::Percent(p),
            }
        }
        (None, None) => image::Sizing::Percent(25),
    };
    // Written into a temporary sibling folder, renamed to OUT only once complete: a failed
    // build leaves no half bundle under OUT.
    let writer = bundle::BundleWriter::create(&opts.out_dir, opts.replace)
        .map_err(|e| BuildError::Output(e.to_string()))?;
    let out = writer.path();
    let inputs_sha = {
        let mut h = Sha256::new();
        for (k, v) in &inputs {
            h.update(format!("{k}\0{v}\n").as_bytes());
        }
        hex::encode(h.finalize())
    };
    let salt: [u8; 32] = {
        let mut h = Sha256::new();
        h.update(b"wafer verity salt\0");
        h.update(recipe_sha.as_bytes());
        h.update(base_sha.as_bytes());
        h.update(inputs_sha.as_bytes());
        h.finalize().into()
    };
    let raw = out.join(if opts.keep_raw {
        "disk.img"
    } else {
        ".disk.img.partial"
    });
    progress.event(&Event::PhaseStarted {
        phase: Phase::Image,
        total: 0,
    });
    let (fs_type, _) = image::write(
        &tree,
        &raw,
        &profile,
        sizing,
        epoch,
        doc.wafer.name.get_ref(),
        image::identity(doc.wafer.vo.get_ref(), doc.wafer.name.get_ref()),
    )
    .map_err(|e| match e {
        image::ImageError::TooSmall { needed: n } => BuildError::ImageTooSmall {
            file: recipe.file.display().to_string(),
            line: doc
                .output
                .size
                .as_ref()
                .map(|s| recipe.line(s.span()))
                .unwrap_or(0),
            given: match sizing {
                image::Sizing::Fixed(b) => b,
                _ => 0,
            },
            needed: n,
            needed_mib: n.div_ceil(1 << 20),
        },
        image::ImageError::Other(m) => BuildError::Output(format!("writing the ext image: {m}")),
    })?;
    progress.event(&Event::PhaseFinished {
        phase: Phase::Image,
    });

    let level = doc
        .output
        .compression_level
        .as_ref()
        .map(|l| *l.get_ref())
        .unwrap_or(3);
    let frame_size = match &doc.output.frame_size {
        Some(f) => {
            recipe::parse_size(f.get_ref()).map_err(|m| recipe.err_at(f.span(), m))? as usize
        }
        None => rootfs::zseek::DEFAULT_FRAME_SIZE,
    };
    let zst = out.join("disk.img.zst");
    let packed = output::pack(&raw, &zst, &salt, level, frame_size, opts.threads, progress)?;
    if !opts.keep_raw {
        std::fs::remove_file(&raw).map_err(|e| BuildError::io(&raw, e))?;
    }

    let mem_mib = match &req.memory {
        Some(m) => recipe::parse_size(m.get_ref())
            .map_err(|e| recipe.err_at(m.span(), e))?
            .div_ceil(1 << 20),
        None => 512,
    };
    let disk_mib = match &req.disk {
        Some(d) => {
            let v = recipe::parse_size(d.get_ref()).map_err(|e| recipe.err_at(d.span(), e))?;
            if v < packed.image_size {
                return Err(recipe.err_at(
                    d.span(),
                    format!(
                        "requirements.disk {v} bytes is smaller than the image ({} bytes)",
                        packed.image_size
                    ),
                ));
            }
            v.div_ceil(1 << 20)
        }
        None => packed.image_size.div_ceil(1 << 20),
    };
    let guest = match req.guest_type.unwrap_or(recipe::GuestType::Pv) {
        recipe::GuestType::Pv => "pv",
        recipe::GuestType::Pvh => "pvh",
        recipe::GuestType::Hvm => "hvm",
    };
    let manifest =
        Manifest {
            format: output::FORMAT.into(),
            name: doc.wafer.name.get_ref().clone(),
            version: doc.wafer.version.get_ref().clone(),
            vo: doc.wafer.vo.get_ref().clone(),
            os,
            arch: arch.clone(),
            filesystem: output::FsFacts {
                fs_type: fs_type.clone(),
                profile: profile.clone(),
                size: packed.image_size,
            },
            requirements: output::ManifestRequirements {
                memory_mib: mem_mib,
                vcpus: req.vcpus.unwrap_or(1),
                disk_mib,
                arch,
                guest_types: vec![guest.into()],
                min_xen: req.xen_min.clone(),
            },
            boot: boot.map(|b| {
                let (flavour, _) = inspect::detect_kernel_flavour(&tree, &b.kernel);
                output::ManifestBoot {
                    cmdline: doc.boot.cmdline.clone().unwrap_or_else(|| {
                        format!("root=/dev/xvda ro console={}", flavour.console())
                    }),
                    kernel: b.kernel,
                    initrd: b.initrd,
                    kernel_flavour: Some(flavour.as_str().into()),
                }
            }),
            image: output::ManifestImage {
                sha256: hex::encode(packed.image_sha256),
                size: packed.image_size,
                verity: output::ManifestVerity {
                    root: hex::encode(packed.verity_root),
                    salt: hex::encode(salt),
                    hash_algorithm: "sha256".into(),
                    data_block_size: 4096,
                    hash_block_size: 4096,
                    format: 1,
                },
            },
            compressed: output::ManifestCompressed {
                file: "disk.img.zst".into(),
                sha256: hex::encode(packed.compressed_sha256),
                size: packed.compressed_size,
                frame_size: frame_size as u64,
                level,
                frames: packed.frames,
            },
            recipe: output::ManifestRecipe {
                sha256: recipe_sha,
                inputs_sha256: inputs_sha,
            },
            base: output::ManifestBase {
                kind: format!("{:?}", doc.base.kind.get_ref()).to_ascii_lowercase(),
                sha256: base_sha,
            },
            packages: packages.map(|(db, list)| output::ManifestPackages {
                database: db,
                count: list.len(),
                list,
            }),
            source_date_epoch: epoch,
        };
    let mut packages_added = Vec::new();
    let mut scriptlets = Vec::new();
    for r in &reports {
        packages_added.extend(r.packages.iter().cloned());
        scriptlets.extend(r.scriptlets_skipped.iter().cloned());
    }
    let report = BuildReport {
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        steps: reports,
        inputs,
        packages_added,
        scriptlets_skipped: scriptlets,
        warnings,
        manifest: Some(manifest.clone()),
    };
    let wrote = |e: bundle::WriterError| BuildError::Output(e.to_string());
    writer.write_manifest(&manifest).map_err(wrote)?;
    writer
        .write_json(bundle::REPORT_FILE, &report)
        .map_err(wrote)?;
    Ok(Staged { report, writer })
}

fn resolve_boot(recipe: &Recipe, tree: &Tree) -> Result<Option<inspect::BootFiles>> {
    let b = &recipe.doc.boot;
    let check = |p: &toml::Spanned<String>, what: &str| -> Result<String> {
        let ok = tree
            .resolve(p.get_ref().as_bytes(), true)
            .map(|id| matches!(tree.node(id).kind, NodeKind::Regular(_)))
            .unwrap_or(false);
        if ok {
            Ok(p.get_ref().clone())
        } else {
            Err(recipe.err_at(
                p.span(),
                format!("boot.{what} {}: no such file in the image", p.get_ref()),
            ))
        }
    };
    let detected = inspect::detect_boot(tree);
    let kernel = match &b.kernel {
        Some(k) => Some(check(k, "kernel")?),
        None => detected.as_ref().map(|d| d.kernel.clone()),
    };
    let initrd = match &b.initrd {
        Some(i) => Some(check(i, "initrd")?),
        None if b.kernel.is_none() => detected.as_ref().and_then(|d| d.initrd.clone()),
        None => None,
    };
    Ok(kernel.map(|kernel| inspect::BootFiles { kernel, initrd }))
}

mod image;
