//! File steps: copy, template, mkdir, symlink, remove, chmod, chown.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use rootfs::{Content, Metadata, Node, NodeKind, Tree};

use super::{
    dir_meta, host_path, record_input, resolve_owner, StepContext, StepError, StepReport,
    StepResult,
};
use crate::recipe::{parse_mode, Principal};

/// Most files one copy step may bring in from a source directory.
const MAX_COPY_ENTRIES: usize = 1_000_000;
/// Largest file a copy step hashes for the report (larger ones are still copied, by reference).
const MAX_HASHED: u64 = 256 << 20;

fn mode_or(mode: &Option<String>, default: u16) -> StepResult<u16> {
    match mode {
        Some(m) => parse_mode(m).map_err(StepError::new),
        None => Ok(default),
    }
}

/// `copy`: a file or a directory tree from the recipe's folder.
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
    let host = host_path(ctx, src)?;
    let md = std::fs::symlink_metadata(&host)
        .map_err(|e| StepError::new(format!("source '{src}' ({}): {e}", host.display())))?;
    let (uid, gid) = resolve_owner(tree, owner, group)?;
    let explicit_mode = match mode {
        Some(m) => Some(parse_mode(m).map_err(StepError::new)?),
        None => None,
    };
    let mut count = 0usize;
    copy_entry(
        tree,
        ctx,
        &host,
        src,
        dest,
        &md,
        uid.unwrap_or(0),
        gid.unwrap_or(0),
        explicit_mode,
        r,
        &mut count,
    )
}

/// Default permission of a copied file: what git keeps (executable or not), never the host's umask.
fn default_perm(md: &std::fs::Metadata) -> u16 {
    if md.is_dir() || md.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

#[allow(clippy::too_many_arguments)]
fn copy_entry(
    tree: &mut Tree,
    ctx: &StepContext,
    host: &Path,
    rel: &str,
    dest: &str,
    md: &std::fs::Metadata,
    uid: u32,
    gid: u32,
    mode: Option<u16>,
    r: &mut StepReport,
    count: &mut usize,
) -> StepResult {
    *count += 1;
    if *count > MAX_COPY_ENTRIES {
        return Err(StepError::new(format!(
            "source '{rel}': more than {MAX_COPY_ENTRIES} entries"
        )));
    }
    let meta = Metadata::new(
        mode.unwrap_or_else(|| default_perm(md)),
        uid,
        gid,
        ctx.epoch,
    );
    let existed = tree.lookup(dest.as_bytes()).is_some();
    let ft = md.file_type();
    if ft.is_file() {
        if md.len() <= MAX_HASHED {
            let bytes =
                std::fs::read(host).map_err(|e| StepError::new(format!("source '{rel}': {e}")))?;
            record_input(ctx, rel, &bytes);
            tree.insert(
                dest.as_bytes(),
                Node::new(NodeKind::Regular(Content::from_bytes(bytes)), meta),
                &dir_meta(ctx),
            )?;
        } else {
            tree.insert(
                dest.as_bytes(),
                Node::new(
                    NodeKind::Regular(Content::from_path(host.to_path_buf(), md.len())),
                    meta,
                ),
                &dir_meta(ctx),
            )?;
        }
        r.note_write(dest, existed);
    } else if ft.is_symlink() {
        let target =
            std::fs::read_link(host).map_err(|e| StepError::new(format!("source '{rel}': {e}")))?;
        let t = target.to_string_lossy().into_owned();
        let meta = Metadata::new(0o777, uid, gid, ctx.epoch);
        tree.insert(
            dest.as_bytes(),
            Node::new(NodeKind::Symlink(t.into_bytes()), meta),
            &dir_meta(ctx),
        )?;
        r.note_write(dest, existed);
    } else if ft.is_dir() {
        tree.insert(
            dest.as_bytes(),
            Node::new(NodeKind::empty_dir(), meta),
            &dir_meta(ctx),
        )?;
        r.note_write(dest, existed);
        let mut names: Vec<_> = std::fs::read_dir(host)
            .map_err(|e| StepError::new(format!("source '{rel}': {e}")))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| StepError::new(format!("source '{rel}': {e}")))?;
        names.sort();
        for name in names {
            let name = name.to_string_lossy().into_owned();
            let child = host.join(&name);
            let cmd = std::fs::symlink_metadata(&child)
                .map_err(|e| StepError::new(format!("source '{rel}/{name}': {e}")))?;
            copy_entry(
                tree,
                ctx,
                &child,
                &format!("{rel}/{name}"),
                &super::join(dest, &name),
                &cmd,
                uid,
                gid,
                // An explicit mode applies to files; directories keep 0755 unless it has x bits.
                mode.map(|m| {
                    if cmd.is_dir() {
                        m | ((m & 0o444) >> 2)
                    } else {
                        m
                    }
                }),
                r,
                count,
            )?;
        }
    } else {
        return Err(StepError::new(format!(
            "source '{rel}': only files, directories and symlinks can be copied"
        )));
    }
    Ok(())
}

/// Replace `{{name}}` (spaces allowed inside the braces) with `vars[name]`. An unknown name is
/// an error naming the template line. `{{` not followed by a name and `}}` is left as is.
pub fn render(text: &str, vars: &BTreeMap<String, String>, src: &str) -> StepResult<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let name = after[..j].trim();
        let is_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
        if !is_name {
            out.push_str("{{");
            rest = after;
            continue;
        }
        match vars.get(name) {
            Some(v) => out.push_str(v),
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
    out.push_str(rest);
    Ok(out)
}

/// `template`: render a text file from the recipe's folder.
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
    let host = host_path(ctx, src)?;
    let md = std::fs::metadata(&host)
        .map_err(|e| StepError::new(format!("source '{src}' ({}): {e}", host.display())))?;
    if md.len() > super::MAX_TEXT_FILE {
        return Err(StepError::new(format!(
            "template '{src}' is larger than {} bytes",
            super::MAX_TEXT_FILE
        )));
    }
    let bytes = std::fs::read(&host).map_err(|e| StepError::new(format!("source '{src}': {e}")))?;
    record_input(ctx, src, &bytes);
    let text = String::from_utf8(bytes).map_err(|e| {
        StepError::new(format!(
            "template '{src}' is not UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let out = render(&text, &ctx.vars, src)?;
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
            render("http_port {{port}} {{ port }}\n", &v, "t").unwrap(),
            "http_port 3128 3128\n"
        );
        assert_eq!(
            render("a {{ }} b {{x y}} }}", &v, "t").unwrap(),
            "a {{ }} b {{x y}} }}"
        );
        let e = render("ok\nmem {{cache_mem}}\n", &v, "squid.conf.in")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "template 'squid.conf.in' line 2: unknown variable 'cache_mem' (known: port)"
        );
    }
}
