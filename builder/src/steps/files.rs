//! File steps: copy, template, mkdir, symlink, remove, chmod, chown.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use rootfs::{Content, Extent, Metadata, Node, NodeKind, Source, Tree};

use super::{
    charge_memory, dir_meta, record_digest, record_input, resolve_owner, source_err, StepContext,
    StepError, StepReport, StepResult,
};
use crate::confine;
use crate::recipe::{parse_mode, Principal};

/// Most files one copy step may bring in from a source directory.
const MAX_COPY_ENTRIES: usize = 1_000_000;

fn mode_or(mode: &Option<String>, default: u16) -> StepResult<u16> {
    match mode {
        Some(m) => parse_mode(m).map_err(StepError::new),
        None => Ok(default),
    }
}

/// `copy`: a file, symlink or directory tree from the recipe's folder. The source is resolved
/// beneath the folder ([`crate::confine`]); a symlink named as the source, or met inside a
/// copied tree, is copied as a symlink, never followed.
#[allow(clippy::too_many_arguments)]
pub fn copy(
    tree: &mut Tree,
    ctx: &StepContext,
    src: &str,
    dest: &str,
    owner: &Option<Principal>,
    group: &Option<Principal>,
    mode: &Option<String>,
    r: &mut StepReport,
) -> StepResult {
    let at = ctx.root.locate(src, false).map_err(source_err)?;
    let (uid, gid) = resolve_owner(tree, owner, group)?;
    let explicit_mode = match mode {
        Some(m) => Some(parse_mode(m).map_err(StepError::new)?),
        None => None,
    };
    let mut count = 0usize;
    copy_entry(
        tree,
        ctx,
        Entry {
            dir: at.dir.as_fd(),
            name: &at.name,
            stat: &at.stat,
            rel: src,
        },
        dest,
        (uid.unwrap_or(0), gid.unwrap_or(0)),
        explicit_mode,
        r,
        &mut count,
    )
}

/// Default permission of a copied file: what git keeps (executable or not), never the host's umask.
fn default_perm(st: &libc::stat) -> u16 {
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR || st.st_mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// One host entry to copy: `name` in the open directory `dir`, its `lstat`, and its
/// recipe-relative path for messages and the report.
struct Entry<'a> {
    dir: BorrowedFd<'a>,
    name: &'a CStr,
    stat: &'a libc::stat,
    rel: &'a str,
}

/// The contents of a copied regular file: in memory up to [`super::MAX_IN_MEMORY_FILE`]
/// (counted against the build's memory budget), else the open file itself (never reopened by
/// name). Either way its sha256 goes into the report.
fn file_content(ctx: &StepContext, e: &Entry<'_>) -> StepResult<Content> {
    let (f, size) = confine::open_regular_at(e.dir, e.name, e.stat, e.rel).map_err(source_err)?;
    if size <= super::MAX_IN_MEMORY_FILE {
        charge_memory(ctx, e.rel, size)?;
        let bytes =
            confine::read_limited(f, size, super::MAX_IN_MEMORY_FILE, e.rel).map_err(source_err)?;
        record_input(ctx, e.rel, &bytes);
        return Ok(Content::from_bytes(bytes));
    }
    let held = ctx.held_files.get() + 1;
    if held > super::MAX_HELD_FILES {
        return Err(StepError::new(format!(
            "source '{}': more than {} files larger than {} bytes in one build",
            e.rel,
            super::MAX_HELD_FILES,
            super::MAX_IN_MEMORY_FILE
        )));
    }
    ctx.held_files.set(held);
    let sha = crate::sha256_read(&mut &f)
        .map_err(|err| StepError::new(format!("source '{}': read: {err}", e.rel)))?;
    record_digest(ctx, e.rel, hex::encode(sha));
    let src = Source::Shared(Arc::new(rootfs::tar::SpoolFile::new(f, size)));
    Content::from_extents(
        src,
        size,
        vec![Extent {
            logical: 0,
            physical: 0,
            len: size,
        }],
    )
    .map_err(|err| StepError::new(format!("source '{}': {err}", e.rel)))
}

#[allow(clippy::too_many_arguments)]
fn copy_entry(
    tree: &mut Tree,
    ctx: &StepContext,
    e: Entry<'_>,
    dest: &str,
    (uid, gid): (u32, u32),
    mode: Option<u16>,
    r: &mut StepReport,
    count: &mut usize,
) -> StepResult {
    *count += 1;
    if *count > MAX_COPY_ENTRIES {
        return Err(StepError::new(format!(
            "source '{}': more than {MAX_COPY_ENTRIES} entries",
            e.rel
        )));
    }
    let meta = Metadata::new(
        mode.unwrap_or_else(|| default_perm(e.stat)),
        uid,
        gid,
        ctx.epoch,
    );
    let existed = tree.lookup(dest.as_bytes()).is_some();
    match e.stat.st_mode & libc::S_IFMT {
        libc::S_IFREG => {
            let content = file_content(ctx, &e)?;
            tree.insert(
                dest.as_bytes(),
                Node::new(NodeKind::Regular(content), meta),
                &dir_meta(ctx),
            )?;
            r.note_write(dest, existed);
        }
        libc::S_IFLNK => {
            let target = confine::read_link_at(e.dir, e.name)
                .map_err(|err| StepError::new(format!("source '{}': readlink: {err}", e.rel)))?;
            let meta = Metadata::new(0o777, uid, gid, ctx.epoch);
            tree.insert(
                dest.as_bytes(),
                Node::new(NodeKind::Symlink(target), meta),
                &dir_meta(ctx),
            )?;
            r.note_write(dest, existed);
        }
        libc::S_IFDIR => {
            tree.insert(
                dest.as_bytes(),
                Node::new(NodeKind::empty_dir(), meta),
                &dir_meta(ctx),
            )?;
            r.note_write(dest, existed);
            let dir = confine::open_dir_at(e.dir, e.name, e.stat, e.rel).map_err(source_err)?;
            let names =
                confine::list_names(dir.as_fd(), MAX_COPY_ENTRIES, e.rel).map_err(source_err)?;
            for name in names {
                let shown = name.to_string_lossy().into_owned();
                let rel = format!("{}/{shown}", e.rel);
                let cname = CString::new(name.as_bytes())
                    .map_err(|_| StepError::new(format!("source '{rel}': NUL in name")))?;
                let st = confine::stat_at(dir.as_fd(), &cname)
                    .map_err(|err| StepError::new(format!("source '{rel}': lstat: {err}")))?;
                let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
                copy_entry(
                    tree,
                    ctx,
                    Entry {
                        dir: dir.as_fd(),
                        name: &cname,
                        stat: &st,
                        rel: &rel,
                    },
                    &super::join(dest, &shown),
                    (uid, gid),
                    // An explicit mode applies to files; directories keep 0755 unless it has x bits.
                    mode.map(|m| if is_dir { m | ((m & 0o444) >> 2) } else { m }),
                    r,
                    count,
                )?;
            }
        }
        other => {
            return Err(StepError::new(format!(
                "source '{}' is a {}: only files, directories and symlinks can be copied",
                e.rel,
                confine::type_name(other)
            )))
        }
    }
    Ok(())
}

/// Replace `{{name}}` (spaces allowed inside the braces) with `vars[name]`. An unknown name is
/// an error naming the template line. `{{` not followed by a name and `}}` is left as is.
/// Output beyond `limit` bytes is an error (checked before it is produced: a small template
/// repeating a large variable never allocates more than the limit).
pub fn render(
    text: &str,
    vars: &BTreeMap<String, String>,
    src: &str,
    limit: u64,
) -> StepResult<String> {
    let mut out = String::with_capacity(text.len().min(limit as usize));
    let push = |out: &mut String, s: &str| -> StepResult {
        if (out.len() as u64).saturating_add(s.len() as u64) > limit {
            return Err(StepError::new(format!(
                "template '{src}': output would exceed the budget of {limit} bytes per file (--max-template-output)"
            )));
        }
        out.push_str(s);
        Ok(())
    };
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        push(&mut out, &rest[..i])?;
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            push(&mut out, &rest[i..])?;
            rest = "";
            break;
        };
        let name = after[..j].trim();
        let is_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
        if !is_name {
            push(&mut out, "{{")?;
            rest = after;
            continue;
        }
        match vars.get(name) {
            Some(v) => push(&mut out, v)?,
            None => {
                let consumed = text.len() - rest.len() + i;
                let line = text[..consumed].bytes().filter(|&b| b == b'\n').count() + 1;
                let known: Vec<&str> = vars.keys().map(|s| s.as_str()).collect();
                return Err(StepError::new(format!(
                    "template '{src}' line {line}: unknown variable '{name}' (known: {})",
                    known.join(", ")
                )));
            }
        }
        rest = &after[j + 2..];
    }
    push(&mut out, rest)?;
    Ok(out)
}

/// `template`: render a text file from the recipe's folder (read confined, at most
/// [`super::MAX_TEXT_FILE`] bytes), within the per-file and per-build output budgets.
#[allow(clippy::too_many_arguments)]
pub fn template(
    tree: &mut Tree,
    ctx: &StepContext,
    src: &str,
    dest: &str,
    owner: &Option<Principal>,
    group: &Option<Principal>,
    mode: &Option<String>,
    r: &mut StepReport,
) -> StepResult {
    let bytes = ctx
        .root
        .read_file(src, super::MAX_TEXT_FILE)
        .map_err(source_err)?;
    record_input(ctx, src, &bytes);
    let text = String::from_utf8(bytes).map_err(|e| {
        StepError::new(format!(
            "template '{src}' is not UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    // Bounded by the per-file budget while rendering, then counted against the build's total.
    let out = render(&text, &ctx.vars, src, ctx.limits.template_file)?;
    let total = ctx.template_bytes.get().saturating_add(out.len() as u64);
    if total > ctx.limits.template_total {
        return Err(StepError::new(format!(
            "template '{src}': output of all templates would exceed the budget of {} bytes per build (--max-template-total)",
            ctx.limits.template_total
        )));
    }
    ctx.template_bytes.set(total);
    let (uid, gid) = resolve_owner(tree, owner, group)?;
    let meta = Metadata::new(
        mode_or(mode, 0o644)?,
        uid.unwrap_or(0),
        gid.unwrap_or(0),
        ctx.epoch,
    );
    let existed = tree.lookup(dest.as_bytes()).is_some();
    tree.insert(
        dest.as_bytes(),
        Node::new(
            NodeKind::Regular(Content::from_bytes(out.into_bytes())),
            meta,
        ),
        &dir_meta(ctx),
    )?;
    r.note_write(dest, existed);
    Ok(())
}

/// `mkdir`: a directory and missing parents (parents 0755 root).
pub fn mkdir(
    tree: &mut Tree,
    ctx: &StepContext,
    path: &str,
    owner: &Option<Principal>,
    group: &Option<Principal>,
    mode: &Option<String>,
    r: &mut StepReport,
) -> StepResult {
    let (uid, gid) = resolve_owner(tree, owner, group)?;
    let perm = mode_or(mode, 0o755)?;
    match tree.resolve(path.as_bytes(), true) {
        Ok(id) if tree.entries(id).is_some() => {
            let m = &mut tree.node_mut(id).meta;
            m.perm = perm;
            if let Some(u) = uid {
                m.uid = u;
            }
            if let Some(g) = gid {
                m.gid = g;
            }
            m.ctime = ctx.epoch;
            r.changed.push(path.to_string());
        }
        Ok(_) => {
            return Err(StepError::new(format!(
                "{path}: exists and is not a directory"
            )))
        }
        Err(_) => {
            let meta = Metadata::new(perm, uid.unwrap_or(0), gid.unwrap_or(0), ctx.epoch);
            tree.insert(
                path.as_bytes(),
                Node::new(NodeKind::empty_dir(), meta),
                &dir_meta(ctx),
            )?;
            r.added.push(path.to_string());
        }
    }
    Ok(())
}

/// `symlink`.
pub fn symlink(
    tree: &mut Tree,
    ctx: &StepContext,
    path: &str,
    target: &str,
    r: &mut StepReport,
) -> StepResult {
    match super::put_symlink(tree, ctx, path, target)? {
        None => r.notes.push(format!("{path} already points to {target}")),
        Some(existed) => r.note_write(path, existed),
    }
    Ok(())
}

/// Compile globs: `*` and `?` do not cross `/`, `**` does.
pub fn globset(globs: &[String]) -> StepResult<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(
            GlobBuilder::new(g)
                .literal_separator(true)
                .build()
                .map_err(|e| StepError::new(format!("glob '{g}': {e}")))?,
        );
    }
    b.build().map_err(|e| StepError::new(format!("globs: {e}")))
}

/// Every tree path matching one of the globs, in walk order, with the index of the first glob matching.
pub fn matching(tree: &Tree, globs: &[String]) -> StepResult<Vec<(String, Vec<usize>)>> {
    let set = globset(globs)?;
    let mut out = Vec::new();
    tree.walk(|p, _| {
        if p == b"/" {
            return;
        }
        let s = String::from_utf8_lossy(p);
        let m = set.matches(s.as_ref());
        if !m.is_empty() {
            out.push((s.into_owned(), m));
        }
    });
    Ok(out)
}

/// `remove`.
pub fn remove(
    tree: &mut Tree,
    globs: &[String],
    must_exist: bool,
    r: &mut StepReport,
) -> StepResult {
    let found = matching(tree, globs)?;
    if must_exist {
        for (i, g) in globs.iter().enumerate() {
            if !found.iter().any(|(_, m)| m.contains(&i)) {
                return Err(StepError::new(format!(
                    "'{g}' matches nothing in the image"
                )));
            }
        }
    }
    let mut last_removed: Option<String> = None;
    for (p, _) in found {
        if let Some(prev) = &last_removed {
            if p.starts_with(prev.as_str()) && p.as_bytes().get(prev.len()) == Some(&b'/') {
                continue; // went with its directory
            }
        }
        tree.remove(p.as_bytes())?;
        r.removed.push(p.clone());
        last_removed = Some(p);
    }
    Ok(())
}

/// `chmod`: permission bits of matching entries (symlinks are left alone).
pub fn chmod(
    tree: &mut Tree,
    ctx: &StepContext,
    globs: &[String],
    mode: &str,
    r: &mut StepReport,
) -> StepResult {
    let perm = parse_mode(mode).map_err(StepError::new)?;
    let found = matching(tree, globs)?;
    if found.is_empty() {
        return Err(StepError::new(format!(
            "{} matches nothing in the image",
            globs.join(", ")
        )));
    }
    for (p, _) in found {
        let Some(id) = tree.lookup(p.as_bytes()) else {
            continue;
        };
        let n = tree.node_mut(id);
        if matches!(n.kind, NodeKind::Symlink(_)) {
            continue;
        }
        if n.meta.perm != perm {
            n.meta.perm = perm;
            n.meta.ctime = ctx.epoch;
            r.changed.push(p);
        }
    }
    Ok(())
}

/// `chown`: owner and/or group of matching entries (symlinks themselves, as `chown -h`).
pub fn chown(
    tree: &mut Tree,
    ctx: &StepContext,
    globs: &[String],
    owner: &Option<Principal>,
    group: &Option<Principal>,
    r: &mut StepReport,
) -> StepResult {
    let (uid, gid) = resolve_owner(tree, owner, group)?;
    // `chown owner` alone must not touch the group.
    let gid = if group.is_some() { gid } else { None };
    let found = matching(tree, globs)?;
    if found.is_empty() {
        return Err(StepError::new(format!(
            "{} matches nothing in the image",
            globs.join(", ")
        )));
    }
    for (p, _) in found {
        let Some(id) = tree.lookup(p.as_bytes()) else {
            continue;
        };
        let m = &mut tree.node_mut(id).meta;
        let before = (m.uid, m.gid);
        if let Some(u) = uid {
            m.uid = u;
        }
        if let Some(g) = gid {
            m.gid = g;
        }
        if before != (m.uid, m.gid) {
            m.ctime = ctx.epoch;
            r.changed.push(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_substitutes_and_refuses_unknown() {
        let mut v = BTreeMap::new();
        v.insert("port".to_string(), "3128".to_string());
        assert_eq!(
            render("http_port {{port}} {{ port }}\n", &v, "t", 100).unwrap(),
            "http_port 3128 3128\n"
        );
        assert_eq!(
            render("a {{ }} b {{x y}} }}", &v, "t", 100).unwrap(),
            "a {{ }} b {{x y}} }}"
        );
        let e = render("ok\nmem {{cache_mem}}\n", &v, "squid.conf.in", 100)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "template 'squid.conf.in' line 2: unknown variable 'cache_mem' (known: port)"
        );
    }

    #[test]
    fn render_stops_at_the_budget_before_producing_it() {
        let mut v = BTreeMap::new();
        v.insert("big".to_string(), "x".repeat(1 << 20));
        let bomb = "{{big}}".repeat(2000);
        let e = render(&bomb, &v, "bomb.in", 16 << 20)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "template 'bomb.in': output would exceed the budget of 16777216 bytes per file (--max-template-output)"
        );
        // Exactly at the budget is fine; one byte over is not (literal text counts too).
        assert_eq!(render("{{big}}", &v, "t", 1 << 20).unwrap().len(), 1 << 20);
        assert!(render("{{big}}.", &v, "t", 1 << 20).is_err());
        assert!(render("abcd", &v, "t", 3).is_err());
    }
}
