//! Steps applied to the tree, in recipe order. Each returns a [`StepReport`] saying what it changed.

use std::cell::Cell;
use std::collections::BTreeMap;

use rootfs::{Content, Metadata, Node, NodeId, NodeKind, Timestamp, Tree};
use serde::Serialize;

use crate::recipe::{Principal, Step};

pub mod accounts;
pub mod context;
pub mod files;
pub mod purge;
pub mod rpm;
pub mod services;

/// Largest text file (passwd, init script, ifcfg...) a step reads into memory.
pub const MAX_TEXT_FILE: u64 = 16 << 20;

/// What one step did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StepReport {
    /// 1-based step number (0 for the default purge the builder adds).
    pub index: usize,
    /// Step type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Recipe line of the step (0 for the default purge).
    pub line: usize,
    /// Paths created.
    pub added: Vec<String>,
    /// Paths whose contents or metadata changed.
    pub changed: Vec<String>,
    /// Paths removed.
    pub removed: Vec<String>,
    /// Packages installed (rpm step).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<PackageAdded>,
    /// Scriptlets not run (rpm step): "package: %post (interpreter)".
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scriptlets_skipped: Vec<String>,
    /// Anything else worth knowing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl StepReport {
    fn note_write(&mut self, path: &str, existed: bool) {
        if existed {
            self.changed.push(path.to_string());
        } else {
            self.added.push(path.to_string());
        }
    }

    /// Sort and deduplicate the path lists (reports are stable).
    pub fn finish(&mut self) {
        for v in [&mut self.added, &mut self.changed, &mut self.removed] {
            v.sort();
            v.dedup();
        }
        let added = self.added.clone();
        self.changed.retain(|p| added.binary_search(p).is_err());
    }
}

/// A package an rpm step installed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct PackageAdded {
    /// Name.
    pub name: String,
    /// `[epoch:]version-release`.
    pub evr: String,
    /// Architecture.
    pub arch: String,
    /// Number of files laid down.
    pub files: usize,
    /// sha256 of the .rpm file.
    pub sha256: String,
    /// `[epoch:]version-release` of the version this one replaced (an upgrade or downgrade).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced: Option<String>,
}

/// What every step may use besides the tree.
#[derive(Debug)]
pub struct StepContext {
    /// The recipe's folder (sources of copy/template/rpm), every read confined beneath it.
    pub root: crate::confine::Root,
    /// Budgets for what recipe inputs may cost.
    pub limits: crate::Limits,
    /// Bytes of template output produced so far (against [`crate::Limits::template_total`]).
    pub template_bytes: Cell<u64>,
    /// Bytes of recipe files held in memory so far (against [`crate::Limits::input_memory`]).
    pub memory_bytes: Cell<u64>,
    /// Large recipe files held open so far (against [`MAX_HELD_FILES`]).
    pub held_files: Cell<usize>,
    /// Time given to everything the build creates or changes.
    pub epoch: Timestamp,
    /// Template variables (recipe `[vars]` plus `wafer_name`, `wafer_version`, `wafer_vo`).
    pub vars: BTreeMap<String, String>,
    /// Host input files read so far, with their sha256 (for the build report).
    pub inputs: std::cell::RefCell<BTreeMap<String, String>>,
    /// Whether a step of the recipe (not the purge) wrote [`purge::RESOLV_CONF`]: the purge
    /// then keeps it (the recipe's own), and removes it otherwise (the base's, often the build
    /// host's copied in by debootstrap or a container build).
    pub resolv_conf_from_recipe: Cell<bool>,
}

/// A step failure; the builder adds the recipe line and step number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StepError(pub String);

impl StepError {
    /// A step error from anything displayable.
    pub fn new(m: impl Into<String>) -> Self {
        StepError(m.into())
    }
}

impl From<rootfs::PathError> for StepError {
    fn from(e: rootfs::PathError) -> Self {
        StepError(e.to_string())
    }
}

/// Result of a step.
pub type StepResult<T = ()> = Result<T, StepError>;

/// Apply one step to the tree.
pub fn apply(tree: &mut Tree, step: &Step, ctx: &StepContext) -> StepResult<StepReport> {
    let mut r = StepReport {
        kind: step.kind().to_string(),
        ..Default::default()
    };
    match step {
        Step::Copy {
            src,
            dest,
            owner,
            group,
            mode,
        } => files::copy(tree, ctx, src, dest, owner, group, mode, &mut r)?,
        Step::Template {
            src,
            dest,
            owner,
            group,
            mode,
        } => files::template(tree, ctx, src, dest, owner, group, mode, &mut r)?,
        Step::Mkdir {
            path,
            owner,
            group,
            mode,
        } => files::mkdir(tree, ctx, path, owner, group, mode, &mut r)?,
        Step::Symlink { path, target } => files::symlink(tree, ctx, path, target, &mut r)?,
        Step::Remove { paths, must_exist } => files::remove(tree, paths, *must_exist, &mut r)?,
        Step::Chmod { paths, mode } => files::chmod(tree, ctx, paths, mode, &mut r)?,
        Step::Chown {
            paths,
            owner,
            group,
        } => files::chown(tree, ctx, paths, owner, group, &mut r)?,
        Step::Rpm {
            packages,
            allow_downgrade,
        } => rpm::install(tree, ctx, packages, *allow_downgrade, &mut r)?,
        Step::Users { users } => accounts::users(tree, ctx, users, &mut r)?,
        Step::Groups { groups } => accounts::groups(tree, ctx, groups, &mut r)?,
        Step::Services {
            enable,
            disable,
            mask,
        } => services::apply(tree, ctx, enable, disable, mask, &mut r)?,
        Step::Purge { keep, enabled } => {
            if *enabled {
                purge::purge(tree, ctx, keep, &mut r)?
            }
        }
        Step::Contextualize { method } => context::install(tree, ctx, method.as_deref(), &mut r)?,
    }
    r.finish();
    if !matches!(step, Step::Purge { .. })
        && [&r.added, &r.changed]
            .iter()
            .any(|v| v.iter().any(|p| p == purge::RESOLV_CONF))
    {
        ctx.resolv_conf_from_recipe.set(true);
    }
    Ok(r)
}

// ---- tree helpers shared by the steps ----

/// Metadata for directories a step creates implicitly: 0755 root:root at the build epoch.
pub fn dir_meta(ctx: &StepContext) -> Metadata {
    Metadata::new(0o755, 0, 0, ctx.epoch)
}

/// The bytes of the regular file at `path` (symlinks followed inside the tree), or `None`
/// when there is no such regular file.
pub fn read_file(tree: &Tree, path: &str) -> StepResult<Option<Vec<u8>>> {
    let Ok(id) = tree.resolve(path.as_bytes(), true) else {
        return Ok(None);
    };
    match &tree.node(id).kind {
        NodeKind::Regular(c) => c
            .read_to_vec(MAX_TEXT_FILE)
            .map(Some)
            .map_err(|e| StepError::new(format!("{path}: cannot read from the image: {e}"))),
        _ => Ok(None),
    }
}

/// Like [`read_file`] but as text (lossy UTF-8: these files are ASCII in practice).
pub fn read_text(tree: &Tree, path: &str) -> StepResult<Option<String>> {
    Ok(read_file(tree, path)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// Write `bytes` to `path`. An existing regular file keeps its node (owner, mode, hard links)
/// and gets new contents and the build epoch as mtime/ctime; otherwise a new file with `meta`
/// is created. Returns whether the file existed.
pub fn write_file(
    tree: &mut Tree,
    ctx: &StepContext,
    path: &str,
    bytes: Vec<u8>,
    meta: Metadata,
) -> StepResult<bool> {
    if let Ok(id) = tree.resolve(path.as_bytes(), true) {
        if let NodeKind::Regular(_) = tree.node(id).kind {
            let n = tree.node_mut(id);
            n.kind = NodeKind::Regular(Content::from_bytes(bytes));
            n.meta.mtime = ctx.epoch;
            n.meta.ctime = ctx.epoch;
            return Ok(true);
        }
    }
    let existed = tree.lookup(path.as_bytes()).is_some();
    tree.insert(
        path.as_bytes(),
        Node::new(NodeKind::Regular(Content::from_bytes(bytes)), meta),
        &dir_meta(ctx),
    )?;
    Ok(existed)
}

/// Edit a text file in place if it exists: `f` gets the text and returns the new text or
/// `None` for no change. Returns whether the file changed.
pub fn edit_text(
    tree: &mut Tree,
    ctx: &StepContext,
    path: &str,
    f: impl FnOnce(&str) -> StepResult<Option<String>>,
) -> StepResult<bool> {
    let Some(old) = read_text(tree, path)? else {
        return Ok(false);
    };
    match f(&old)? {
        Some(new) if new != old => {
            write_file(
                tree,
                ctx,
                path,
                new.into_bytes(),
                Metadata::new(0o644, 0, 0, ctx.epoch),
            )?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Make a directory (and parents) with `meta` unless one exists; returns its id and whether it was created.
pub fn ensure_dir(
    tree: &mut Tree,
    ctx: &StepContext,
    path: &str,
    meta: Metadata,
) -> StepResult<(NodeId, bool)> {
    if let Ok(id) = tree.resolve(path.as_bytes(), true) {
        if tree.entries(id).is_some() {
            return Ok((id, false));
        }
        return Err(StepError::new(format!(
            "{path}: exists and is not a directory"
        )));
    }
    let id = tree.insert(
        path.as_bytes(),
        Node::new(NodeKind::empty_dir(), meta),
        &dir_meta(ctx),
    )?;
    Ok((id, true))
}

/// Create or replace a symlink at `path`. Returns `None` if an identical link was already there,
/// `Some(existed)` otherwise.
pub fn put_symlink(
    tree: &mut Tree,
    ctx: &StepContext,
    path: &str,
    target: &str,
) -> StepResult<Option<bool>> {
    let existing = tree.lookup(path.as_bytes());
    if let Some(id) = existing {
        match &tree.node(id).kind {
            NodeKind::Symlink(t) if t == target.as_bytes() => return Ok(None),
            NodeKind::Directory(e) if !e.is_empty() => {
                return Err(StepError::new(format!(
                    "{path}: is a non-empty directory, cannot become a symlink"
                )))
            }
            _ => {}
        }
    }
    let meta = Metadata::new(0o777, 0, 0, ctx.epoch);
    tree.insert(
        path.as_bytes(),
        Node::new(NodeKind::Symlink(target.as_bytes().to_vec()), meta),
        &dir_meta(ctx),
    )?;
    Ok(Some(existing.is_some()))
}

/// Remove `path` if present; returns whether something was removed.
pub fn remove_if_present(tree: &mut Tree, path: &str) -> bool {
    tree.lookup(path.as_bytes()).is_some() && tree.remove(path.as_bytes()).is_ok()
}

/// Names in directory `dir` (not following a final symlink of `dir` itself unless it resolves), sorted.
pub fn list_dir(tree: &Tree, dir: &str) -> Vec<String> {
    let Ok(id) = tree.resolve(dir.as_bytes(), true) else {
        return Vec::new();
    };
    tree.entries(id)
        .map(|e| {
            e.keys()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Join a directory path and a name.
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Resolve owner and group against the image's accounts. The group defaults to the owner's
/// primary group (when an owner is named) or root.
pub fn resolve_owner(
    tree: &Tree,
    owner: &Option<Principal>,
    group: &Option<Principal>,
) -> StepResult<(Option<u32>, Option<u32>)> {
    if owner.is_none() && group.is_none() {
        return Ok((None, None));
    }
    let acc = accounts::Accounts::load(tree)?;
    let (uid, primary) = match owner {
        None => (None, None),
        Some(Principal::Id(u)) => (Some(*u), acc.user_by_uid(*u).map(|u| u.gid)),
        Some(Principal::Name(n)) => {
            let u = acc.user(n).ok_or_else(|| {
                StepError::new(format!("unknown user '{n}': not in the image's /etc/passwd (add it with a users step first)"))
            })?;
            (Some(u.uid), Some(u.gid))
        }
    };
    let gid = match group {
        None => primary.or(uid.map(|_| 0)),
        Some(Principal::Id(g)) => Some(*g),
        Some(Principal::Name(n)) => Some(
            acc.group(n)
                .ok_or_else(|| {
                    StepError::new(format!(
                        "unknown group '{n}': not in the image's /etc/group"
                    ))
                })?
                .gid,
        ),
    };
    Ok((uid, gid))
}

/// Largest recipe file a step reads into memory; larger `copy` sources stay on the host, held
/// open, and are read when the image is written.
pub const MAX_IN_MEMORY_FILE: u64 = 16 << 20;
/// Most recipe files larger than [`MAX_IN_MEMORY_FILE`] one build holds open.
pub const MAX_HELD_FILES: usize = 256;

/// A step error for a recipe source that could not be read beneath the recipe's folder.
pub fn source_err(e: crate::confine::ConfineError) -> StepError {
    StepError::new(format!("source {e}"))
}

/// Count `n` more bytes of recipe input held in memory against the build's budget.
pub fn charge_memory(ctx: &StepContext, rel: &str, n: u64) -> StepResult {
    let used = ctx.memory_bytes.get().saturating_add(n);
    if used > ctx.limits.input_memory {
        return Err(StepError::new(format!(
            "source '{rel}': recipe files held in memory would exceed the budget of {} bytes per build (--max-input-memory)",
            ctx.limits.input_memory
        )));
    }
    ctx.memory_bytes.set(used);
    Ok(())
}

/// Record a host input's digest for the report.
pub fn record_input(ctx: &StepContext, rel: &str, bytes: &[u8]) {
    use sha2::Digest;
    record_digest(ctx, rel, hex::encode(sha2::Sha256::digest(bytes)));
}

/// Record a host input's digest (lowercase hex) for the report.
pub fn record_digest(ctx: &StepContext, rel: &str, sha256: String) {
    ctx.inputs.borrow_mut().insert(rel.to_string(), sha256);
}
