//! Bounds for configuration files that include others: loop detection (by inode), depth and
//! file-count caps, size cap per file. Every configuration parser reads through [`Includes`].

use std::collections::HashSet;

use rootfs::{NodeId, Tree};

use crate::util;
use crate::Problem;

/// Deepest include chain followed.
pub const MAX_DEPTH: usize = 16;
/// Most files one configuration may pull in.
pub const MAX_FILES: usize = 256;
/// Most lines read from one configuration (all files together).
pub const MAX_LINES: usize = 1_000_000;

/// State of one configuration's include walk.
#[derive(Debug, Default)]
pub struct Includes {
    active: Vec<NodeId>,
    seen: HashSet<NodeId>,
    /// Files read, in order.
    pub files: Vec<String>,
    lines: usize,
}

impl Includes {
    /// A fresh walk.
    pub fn new() -> Self {
        Includes::default()
    }

    /// Open `path` at include `depth`: its text, or `None` (absent, a loop, over a cap; the
    /// reason goes to `problems` except for absence).
    pub fn open(
        &mut self,
        tree: &Tree,
        path: &str,
        depth: usize,
        problems: &mut Vec<Problem>,
    ) -> Option<String> {
        let id = util::resolve(tree, path)?;
        if depth > MAX_DEPTH {
            problems.push(Problem {
                path: path.into(),
                message: format!("include chain deeper than {MAX_DEPTH}; not followed"),
            });
            return None;
        }
        if self.active.contains(&id) {
            problems.push(Problem {
                path: path.into(),
                message: "include loop; not followed again".into(),
            });
            return None;
        }
        if self.files.len() >= MAX_FILES {
            problems.push(Problem {
                path: path.into(),
                message: format!("more than {MAX_FILES} included files; not followed"),
            });
            return None;
        }
        let text = match util::read_node(tree, id, path, util::MAX_CONFIG_BYTES) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(util::ReadError::NotRegular { .. }) => return None,
            Err(e) => {
                problems.push(Problem {
                    path: path.into(),
                    message: e.to_string(),
                });
                return None;
            }
        };
        self.lines += text.lines().count();
        if self.lines > MAX_LINES {
            problems.push(Problem {
                path: path.into(),
                message: format!("more than {MAX_LINES} configuration lines; not read"),
            });
            return None;
        }
        self.seen.insert(id);
        self.active.push(id);
        self.files.push(path.to_string());
        Some(text)
    }

    /// Mark the most recently opened file as finished (it may be included again, not recursively).
    pub fn close(&mut self) {
        self.active.pop();
    }

    /// Whether the file at `path` was already read in this walk.
    pub fn was_read(&self, tree: &Tree, path: &str) -> bool {
        util::resolve(tree, path).is_some_and(|id| self.seen.contains(&id))
    }
}
