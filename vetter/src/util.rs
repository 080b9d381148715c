//! Reading files of a [`rootfs::Tree`] with caps: everything the vetter reads goes through here,
//! so symlinks always resolve inside the image and no read is unbounded.

use rootfs::{NodeId, NodeKind, Tree};

/// The most a configuration or text file may weigh before the vetter refuses to read it.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The path does not exist or cannot be resolved inside the image.
    #[error("{path}: {source}")]
    Path {
        /// The path asked for.
        path: String,
        /// The resolution error.
        #[source]
        source: rootfs::PathError,
    },
    /// The path resolves to something that is not a regular file.
    #[error("{path}: not a regular file")]
    NotRegular {
        /// The path asked for.
        path: String,
    },
    /// The file exceeds the size cap.
    #[error("{path}: {size} bytes exceeds the {limit} byte limit")]
    TooBig {
        /// The path asked for.
        path: String,
        /// Its size.
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// The bytes could not be read from their source.
    #[error("{path}: read error: {source}")]
    Io {
        /// The path asked for.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Resolve `path` (following symlinks, confined to the tree) to a node id.
pub fn resolve(tree: &Tree, path: &str) -> Option<NodeId> {
    tree.resolve(path.as_bytes(), true).ok()
}

/// Whether `path` exists (after following symlinks).
pub fn exists(tree: &Tree, path: &str) -> bool {
    resolve(tree, path).is_some()
}

/// Read a regular file of at most `limit` bytes.
pub fn read_file(tree: &Tree, path: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
    let id = tree
        .resolve(path.as_bytes(), true)
        .map_err(|source| ReadError::Path {
            path: path.to_string(),
            source,
        })?;
    read_node(tree, id, path, limit)
}

/// Read regular-file node `id` (known as `path`) of at most `limit` bytes.
pub fn read_node(tree: &Tree, id: NodeId, path: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
    match &tree.node(id).kind {
        NodeKind::Regular(c) => {
            if c.size() > limit {
                return Err(ReadError::TooBig {
                    path: path.to_string(),
                    size: c.size(),
                    limit,
                });
            }
            c.read_to_vec(limit).map_err(|source| ReadError::Io {
                path: path.to_string(),
                source,
            })
        }
        _ => Err(ReadError::NotRegular {
            path: path.to_string(),
        }),
    }
}

/// Read a text file (lossy UTF-8) under the config cap; `None` if absent or unreadable.
pub fn read_text(tree: &Tree, path: &str) -> Option<String> {
    match read_file(tree, path, MAX_CONFIG_BYTES) {
        Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Err(ReadError::Path { .. }) | Err(ReadError::NotRegular { .. }) => None,
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    }
}

/// The names in directory `path` (following symlinks), sorted; empty if it is not a directory.
pub fn list_dir(tree: &Tree, path: &str) -> Vec<String> {
    match resolve(tree, path).and_then(|id| tree.entries(id)) {
        Some(e) => e
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect(),
        None => Vec::new(),
    }
}

/// The target of symlink `path` (not followed), if it is one.
pub fn readlink(tree: &Tree, path: &str) -> Option<String> {
    let id = tree.resolve(path.as_bytes(), false).ok()?;
    match &tree.node(id).kind {
        NodeKind::Symlink(t) => Some(String::from_utf8_lossy(t).into_owned()),
        _ => None,
    }
}

/// Join a directory and a name with one slash.
pub fn join(dir: &str, name: &str) -> String {
    if name.starts_with('/') {
        return name.to_string();
    }
    let d = dir.trim_end_matches('/');
    format!("{d}/{name}")
}

/// Shell-style wildcard match of one path component (`*`, `?`, `[...]` with ranges and `!`/`^`).
pub fn wildcard(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with single backtrack point for '*'.
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => match class_match(&p, pi, n.get(ni).copied().unwrap_or('\0')) {
                Some((true, next)) => Some(next),
                _ => None,
            },
            Some(&c) if n.get(ni) == Some(&c) => Some(pi + 1),
            _ => None,
        };
        match step {
            Some(next) => {
                pi = next;
                ni += 1;
            }
            None => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    while p.get(pi) == Some(&'*') {
        pi += 1;
    }
    pi == p.len()
}

/// Match `c` against the bracket class starting at `p[start] == '['`: (matched, index after `]`).
fn class_match(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            let hi = *p.get(i + 2)?;
            if ch <= c && c <= hi {
                matched = true;
            }
            i += 3;
        } else {
            if ch == c {
                matched = true;
            }
            i += 1;
        }
    }
}

/// Expand a glob path (wildcards allowed in any component) against the tree, sorted, at most
/// `max` results. A path without wildcards is returned as is if it exists.
pub fn glob(tree: &Tree, pattern: &str, max: usize) -> Vec<String> {
    let mut current = vec![String::new()];
    let comps: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    for (i, comp) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let mut next = Vec::new();
        for base in &current {
            if comp.contains(['*', '?', '[']) {
                let dir = if base.is_empty() {
                    "/".to_string()
                } else {
                    base.clone()
                };
                for name in list_dir(tree, &dir) {
                    if name.starts_with('.') && !comp.starts_with('.') {
                        continue;
                    }
                    if wildcard(comp, &name) {
                        next.push(format!("{base}/{name}"));
                    }
                    if next.len() >= max {
                        break;
                    }
                }
            } else {
                let p = format!("{base}/{comp}");
                if !last || exists(tree, &p) {
                    next.push(p);
                }
            }
        }
        next.truncate(max);
        current = next;
        if current.is_empty() {
            break;
        }
    }
    current.retain(|p| !p.is_empty() && exists(tree, p));
    current.sort();
    current
}

/// Show raw path bytes lossily as UTF-8.
pub fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("*.conf", "ssl.conf"));
        assert!(!wildcard("*.conf", "ssl.conf.bak"));
        assert!(wildcard("S[0-9][0-9]*", "S55sshd"));
        assert!(!wildcard("S[!0-9]*", "S5"));
        assert!(wildcard("a?c", "abc"));
        assert!(wildcard("*", ""));
        assert!(!wildcard("[", "["));
    }
}
