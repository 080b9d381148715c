//! The in-memory filesystem tree every reader fills and every writer drains.
//!
//! A [`Tree`] is a table of [`Node`]s (inodes) addressed by [`NodeId`], plus directory entries
//! mapping byte-string names to node ids. Several entries may name the same node: those are hard
//! links. Names are raw bytes (Linux file names need not be UTF-8). Directory entries are kept
//! sorted by name, so every walk is deterministic. File contents are not held here: a regular
//! file carries a [`Content`] that says where its bytes live.
//!
//! Path handling is confined: `..` never climbs above the root, absolute symlink targets resolve
//! against the tree's root (never the host's), and symlink chains longer than
//! [`MAX_SYMLINK_FOLLOWS`] are reported as loops.

use std::collections::BTreeMap;

use crate::content::Content;

/// How many symlinks one resolution may follow before it is declared a loop (Linux uses 40).
pub const MAX_SYMLINK_FOLLOWS: usize = 40;

/// Longest symlink target a resolution follows (Linux: `PATH_MAX`); a longer one is an error, so
/// one resolution handles at most [`MAX_SYMLINK_FOLLOWS`] times this many bytes of targets.
pub const MAX_SYMLINK_TARGET: usize = 4096;

/// Index of a node in its [`Tree`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u32);

/// Seconds and nanoseconds since the Unix epoch.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Timestamp {
    /// Whole seconds (may be negative).
    pub sec: i64,
    /// Nanoseconds, 0..1_000_000_000.
    pub nsec: u32,
}

impl Timestamp {
    /// A timestamp with whole seconds.
    pub fn from_secs(sec: i64) -> Self {
        Timestamp { sec, nsec: 0 }
    }
}

/// A device's major and minor numbers.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Device {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

/// The type of a node, as in the `S_IFMT` bits of `st_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    /// Regular file.
    Regular,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
}

impl FileType {
    /// The `S_IFMT` bits for this type.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileType::Regular => 0o100000,
            FileType::Directory => 0o040000,
            FileType::Symlink => 0o120000,
            FileType::CharDevice => 0o020000,
            FileType::BlockDevice => 0o060000,
            FileType::Fifo => 0o010000,
            FileType::Socket => 0o140000,
        }
    }

    /// The type encoded in a full `st_mode`, if it is one of the seven.
    pub fn from_mode(mode: u32) -> Option<FileType> {
        Some(match mode & 0o170000 {
            0o100000 => FileType::Regular,
            0o040000 => FileType::Directory,
            0o120000 => FileType::Symlink,
            0o020000 => FileType::CharDevice,
            0o060000 => FileType::BlockDevice,
            0o010000 => FileType::Fifo,
            0o140000 => FileType::Socket,
            _ => return None,
        })
    }

    /// The one-letter type `ls -l` shows.
    pub fn ls_char(self) -> char {
        match self {
            FileType::Regular => '-',
            FileType::Directory => 'd',
            FileType::Symlink => 'l',
            FileType::CharDevice => 'c',
            FileType::BlockDevice => 'b',
            FileType::Fifo => 'p',
            FileType::Socket => 's',
        }
    }
}

/// What a node is, with the data that depends on its type.
#[derive(Clone, Debug)]
pub enum NodeKind {
    /// A regular file and where its bytes are.
    Regular(Content),
    /// A directory: names to nodes, sorted by name. Never contains `.` or `..`.
    Directory(BTreeMap<Vec<u8>, NodeId>),
    /// A symbolic link and its target, as raw bytes.
    Symlink(Vec<u8>),
    /// A character device.
    CharDevice(Device),
    /// A block device.
    BlockDevice(Device),
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
}

impl NodeKind {
    /// The node's type.
    pub fn file_type(&self) -> FileType {
        match self {
            NodeKind::Regular(_) => FileType::Regular,
            NodeKind::Directory(_) => FileType::Directory,
            NodeKind::Symlink(_) => FileType::Symlink,
            NodeKind::CharDevice(_) => FileType::CharDevice,
            NodeKind::BlockDevice(_) => FileType::BlockDevice,
            NodeKind::Fifo => FileType::Fifo,
            NodeKind::Socket => FileType::Socket,
        }
    }

    /// An empty directory.
    pub fn empty_dir() -> Self {
        NodeKind::Directory(BTreeMap::new())
    }
}

/// Ownership, permissions, times and extended attributes of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Permission bits including setuid (0o4000), setgid (0o2000) and sticky (0o1000); no type bits.
    pub perm: u16,
    /// Owner (32-bit).
    pub uid: u32,
    /// Group (32-bit).
    pub gid: u32,
    /// Last access.
    pub atime: Timestamp,
    /// Last modification.
    pub mtime: Timestamp,
    /// Last status change.
    pub ctime: Timestamp,
    /// Creation time, where the source records one.
    pub crtime: Option<Timestamp>,
    /// Extended attributes by full name (`security.capability`, `security.selinux`, `user.*`, ...).
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Metadata {
    /// Metadata with the given permissions and owner, all times at `time`.
    pub fn new(perm: u16, uid: u32, gid: u32, time: Timestamp) -> Self {
        Metadata {
            perm: perm & 0o7777,
            uid,
            gid,
            atime: time,
            mtime: time,
            ctime: time,
            crtime: None,
            xattrs: BTreeMap::new(),
        }
    }

    /// Set all four times to `time` (crtime only if present).
    pub fn set_all_times(&mut self, time: Timestamp) {
        self.atime = time;
        self.mtime = time;
        self.ctime = time;
        if self.crtime.is_some() {
            self.crtime = Some(time);
        }
    }
}

/// One inode: its kind, its metadata, and its inode number in the source it was read from.
#[derive(Clone, Debug)]
pub struct Node {
    /// Type and type-specific data.
    pub kind: NodeKind,
    /// Owner, permissions, times, xattrs.
    pub meta: Metadata,
    /// The inode number in the image this node was read from (ext reader), or 0.
    pub source_ino: u64,
}

impl Node {
    /// A node of `kind` with `meta`.
    pub fn new(kind: NodeKind, meta: Metadata) -> Self {
        Node {
            kind,
            meta,
            source_ino: 0,
        }
    }

    /// The node's type.
    pub fn file_type(&self) -> FileType {
        self.kind.file_type()
    }

    /// Full `st_mode`: type bits plus permission bits.
    pub fn mode(&self) -> u32 {
        self.file_type().mode_bits() | u32::from(self.meta.perm & 0o7777)
    }

    /// Logical size as `stat` reports it: file size, symlink target length, 0 otherwise
    /// (directories have no intrinsic size in the model; writers decide it).
    pub fn size(&self) -> u64 {
        match &self.kind {
            NodeKind::Regular(c) => c.size(),
            NodeKind::Symlink(t) => t.len() as u64,
            _ => 0,
        }
    }
}

/// Errors from path lookups and tree edits. Paths are shown lossily as UTF-8.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    /// A component does not exist.
    #[error("{path}: no such file or directory")]
    NotFound {
        /// The path asked for.
        path: String,
    },
    /// A non-final component is not a directory.
    #[error("{path}: a component is not a directory")]
    NotADirectory {
        /// The path asked for.
        path: String,
    },
    /// Too many symlinks followed (a loop).
    #[error("{path}: too many levels of symbolic links (loop?)")]
    SymlinkLoop {
        /// The path asked for.
        path: String,
    },
    /// A lexical path climbs above the root with `..`.
    #[error("{path}: climbs out of the root with '..'")]
    Escapes {
        /// The offending path.
        path: String,
    },
    /// The path names the root or is empty where a name is needed.
    #[error("{path}: needs a file name")]
    NoName {
        /// The path given.
        path: String,
    },
    /// A component contains a NUL byte.
    #[error("{path}: contains a NUL byte")]
    Nul {
        /// The offending path.
        path: String,
    },
    /// Hard links to directories are not allowed.
    #[error("{path}: cannot hard-link a directory")]
    LinkToDirectory {
        /// The link path.
        path: String,
    },
    /// Replacing a directory with something else, or removing the root.
    #[error("{path}: {what}")]
    Invalid {
        /// The path.
        path: String,
        /// What is wrong.
        what: &'static str,
    },
}

/// Show a byte path for messages.
pub fn display_path(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// Split a path into its components lexically: empty components and `.` are dropped, `..`
/// removes the previous component. A `..` that would climb above the start is an error:
/// archive entries must never reach outside the root.
pub fn normalize(path: &[u8]) -> Result<Vec<&[u8]>, PathError> {
    let mut out: Vec<&[u8]> = Vec::new();
    for comp in path.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err(PathError::Escapes {
                        path: display_path(path),
                    });
                }
            }
            c => {
                if c.contains(&0) {
                    return Err(PathError::Nul {
                        path: display_path(path),
                    });
                }
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// A filesystem tree. See the module documentation.
#[derive(Clone, Debug)]
pub struct Tree {
    nodes: Vec<Node>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new(Metadata::new(0o755, 0, 0, Timestamp::default()))
    }
}

impl Tree {
    /// A tree holding only a root directory with `root_meta`.
    pub fn new(root_meta: Metadata) -> Self {
        Tree {
            nodes: vec![Node::new(NodeKind::empty_dir(), root_meta)],
        }
    }

    /// The root directory.
    pub fn root(&self) -> NodeId {
        NodeId(0)
    }

    /// Number of node slots (including nodes no longer reachable after removals).
    pub fn node_slots(&self) -> usize {
        self.nodes.len()
    }

    /// The node `id`. Ids come from this tree, so this only fails for ids of another tree.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0 as usize]
    }

    /// The node `id`, mutably.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id.0 as usize]
    }

    /// Add a node that no directory names yet; link it with [`Tree::link_at`].
    pub fn add_node(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        NodeId((self.nodes.len() - 1) as u32)
    }

    /// The entries of directory `dir`, or `None` if it is not a directory.
    pub fn entries(&self, dir: NodeId) -> Option<&BTreeMap<Vec<u8>, NodeId>> {
        match &self.node(dir).kind {
            NodeKind::Directory(e) => Some(e),
            _ => None,
        }
    }

    fn entries_mut(&mut self, dir: NodeId) -> Option<&mut BTreeMap<Vec<u8>, NodeId>> {
        match &mut self.node_mut(dir).kind {
            NodeKind::Directory(e) => Some(e),
            _ => None,
        }
    }

    /// Resolve `path` inside the tree, following symlinks confined to the tree (absolute
    /// targets start at this tree's root; `..` stops at the root). The final component is
    /// followed only if `follow_last`.
    pub fn resolve(&self, path: &[u8], follow_last: bool) -> Result<NodeId, PathError> {
        self.resolve_from(self.root(), path, follow_last)
    }

    /// Like [`Tree::resolve`] but relative paths start at directory `start`.
    ///
    /// `..` from `start` climbs through the directories above it (found by a search from the
    /// root, since nodes keep no parent pointers), never above the root.
    pub fn resolve_from(
        &self,
        start: NodeId,
        path: &[u8],
        follow_last: bool,
    ) -> Result<NodeId, PathError> {
        // The chain of directories from the root to the current directory.
        let mut chain: Vec<NodeId> = if path.first() == Some(&b'/') || start == self.root() {
            vec![self.root()]
        } else {
            self.chain_to(start).ok_or_else(|| PathError::NotFound {
                path: display_path(path),
            })?
        };
        self.resolve_in_chain(&mut chain, path, follow_last)
    }

    /// Resolve `path` from the directory at the end of `chain` (the directories from the root
    /// down to it). On success `chain` ends at the directory reached (the result itself if it is
    /// a directory, else its parent).
    fn resolve_in_chain(
        &self,
        chain: &mut Vec<NodeId>,
        path: &[u8],
        follow_last: bool,
    ) -> Result<NodeId, PathError> {
        let shown = || display_path(path);
        if path.first() == Some(&b'/') {
            chain.truncate(1);
        }
        // Pending components, processed from the back.
        let mut pending: Vec<Vec<u8>> = path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(|c| c.to_vec())
            .collect();
        let mut follows = 0usize;
        while let Some(comp) = pending.pop() {
            let cur = *chain.last().unwrap_or(&self.root());
            match comp.as_slice() {
                b"." => continue,
                b".." => {
                    if chain.len() > 1 {
                        chain.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let entries = self
                .entries(cur)
                .ok_or_else(|| PathError::NotADirectory { path: shown() })?;
            let &child = entries
                .get(&comp)
                .ok_or_else(|| PathError::NotFound { path: shown() })?;
            let is_last = pending.is_empty();
            match &self.node(child).kind {
                NodeKind::Symlink(target) if !is_last || follow_last => {
                    follows += 1;
                    if follows > MAX_SYMLINK_FOLLOWS {
                        return Err(PathError::SymlinkLoop { path: shown() });
                    }
                    if target.len() > MAX_SYMLINK_TARGET {
                        return Err(PathError::Invalid {
                            path: shown(),
                            what: "a symbolic link on the way has a target longer than 4096 bytes",
                        });
                    }
                    if target.first() == Some(&b'/') {
                        chain.truncate(1);
                    }
                    for c in target.split(|&b| b == b'/').filter(|c| !c.is_empty()).rev() {
                        pending.push(c.to_vec());
                    }
                }
                NodeKind::Directory(_) => chain.push(child),
                _ => {
                    if !is_last {
                        return Err(PathError::NotADirectory { path: shown() });
                    }
                    return Ok(child);
                }
            }
        }
        Ok(*chain.last().unwrap_or(&self.root()))
    }

    /// The directories from the root down to `target` (a directory), if reachable. Iterative
    /// (a tree 100,000 directories deep must not overflow the stack), linear in the tree's size.
    fn chain_to(&self, target: NodeId) -> Option<Vec<NodeId>> {
        let root = self.root();
        if target == root {
            return Some(vec![root]);
        }
        const NONE: u32 = u32::MAX;
        let mut parent = vec![NONE; self.nodes.len()];
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let Some(entries) = self.entries(dir) else {
                continue;
            };
            for &child in entries.values() {
                let slot = child.0 as usize;
                if child == root || parent.get(slot) != Some(&NONE) || self.entries(child).is_none()
                {
                    continue;
                }
                parent[slot] = dir.0;
                if child == target {
                    let mut chain = vec![child];
                    let mut cur = child;
                    while cur != root {
                        cur = NodeId(parent[cur.0 as usize]);
                        chain.push(cur);
                    }
                    chain.reverse();
                    return Some(chain);
                }
                stack.push(child);
            }
        }
        None
    }

    /// Look a path up without following a final symlink.
    pub fn lookup(&self, path: &[u8]) -> Option<NodeId> {
        self.resolve(path, false).ok()
    }

    /// Split `path` into (parent directory id, final name), creating missing parent
    /// directories with `dir_meta`. Intermediate symlinks are followed, confined to the tree.
    fn parent_for_insert(
        &mut self,
        path: &[u8],
        dir_meta: &Metadata,
    ) -> Result<(NodeId, Vec<u8>), PathError> {
        let comps = normalize(path)?;
        let (name, parents) = comps.split_last().ok_or_else(|| PathError::NoName {
            path: display_path(path),
        })?;
        let mut cur = self.root();
        // The directories from the root to `cur`, so that a symlink met on the way resolves
        // (its `..` climbing) without searching the tree for where `cur` is.
        let mut chain = vec![cur];
        for comp in parents {
            let existing = self.entries(cur).and_then(|e| e.get(*comp)).copied();
            cur = match existing {
                Some(id) => match &self.node(id).kind {
                    NodeKind::Directory(_) => {
                        chain.push(id);
                        id
                    }
                    NodeKind::Symlink(_) => {
                        let target = self.resolve_in_chain(&mut chain, comp, true)?;
                        if self.entries(target).is_none() {
                            return Err(PathError::NotADirectory {
                                path: display_path(path),
                            });
                        }
                        target
                    }
                    _ => {
                        return Err(PathError::NotADirectory {
                            path: display_path(path),
                        })
                    }
                },
                None => {
                    let id = self.add_node(Node::new(NodeKind::empty_dir(), dir_meta.clone()));
                    self.entries_mut(cur)
                        .ok_or_else(|| PathError::NotADirectory {
                            path: display_path(path),
                        })?
                        .insert(comp.to_vec(), id);
                    chain.push(id);
                    id
                }
            };
        }
        Ok((cur, name.to_vec()))
    }

    /// Create or replace the entry at `path` with `node`. Missing parents are created with
    /// `dir_meta`. If both the existing entry and `node` are directories, the existing
    /// directory keeps its entries and takes the new metadata (as `tar -x` does).
    /// Replacing a non-empty directory with a non-directory is an error.
    pub fn insert(
        &mut self,
        path: &[u8],
        node: Node,
        dir_meta: &Metadata,
    ) -> Result<NodeId, PathError> {
        let (parent, name) = self.parent_for_insert(path, dir_meta)?;
        let existing = self.entries(parent).and_then(|e| e.get(&name)).copied();
        if let Some(old) = existing {
            let old_is_dir = matches!(self.node(old).kind, NodeKind::Directory(_));
            let new_is_dir = matches!(node.kind, NodeKind::Directory(_));
            if old_is_dir && new_is_dir {
                let n = self.node_mut(old);
                n.meta = node.meta;
                n.source_ino = node.source_ino;
                return Ok(old);
            }
            if old_is_dir && self.entries(old).is_some_and(|e| !e.is_empty()) {
                return Err(PathError::Invalid {
                    path: display_path(path),
                    what: "would replace a non-empty directory",
                });
            }
        }
        let id = self.add_node(node);
        self.entries_mut(parent)
            .ok_or_else(|| PathError::NotADirectory {
                path: display_path(path),
            })?
            .insert(name, id);
        Ok(id)
    }

    /// Make `path` another name (hard link) for node `target`. Directories cannot be hard-linked.
    pub fn link_at(
        &mut self,
        path: &[u8],
        target: NodeId,
        dir_meta: &Metadata,
    ) -> Result<(), PathError> {
        if matches!(self.node(target).kind, NodeKind::Directory(_)) {
            return Err(PathError::LinkToDirectory {
                path: display_path(path),
            });
        }
        let (parent, name) = self.parent_for_insert(path, dir_meta)?;
        if let Some(old) = self.entries(parent).and_then(|e| e.get(&name)).copied() {
            if self.entries(old).is_some_and(|e| !e.is_empty()) {
                return Err(PathError::Invalid {
                    path: display_path(path),
                    what: "would replace a non-empty directory",
                });
            }
        }
        self.entries_mut(parent)
            .ok_or_else(|| PathError::NotADirectory {
                path: display_path(path),
            })?
            .insert(name, target);
        Ok(())
    }

    /// Low-level: add entry `name` -> `child` to directory `parent`, for readers that build the
    /// tree from a source's own directory structure (e.g. the ext reader attaching each inode).
    /// The caller guarantees a directory node is attached at most once (no directory cycles);
    /// [`Tree::walk`] visits a directory only once even if a corrupt source broke that.
    /// Fails if `parent` is not a directory or `name` is empty, `.`, `..`, or contains `/` or NUL.
    pub fn attach(&mut self, parent: NodeId, name: &[u8], child: NodeId) -> Result<(), PathError> {
        if name.is_empty()
            || name == b"."
            || name == b".."
            || name.contains(&b'/')
            || name.contains(&0)
        {
            return Err(PathError::Invalid {
                path: display_path(name),
                what: "invalid file name",
            });
        }
        self.entries_mut(parent)
            .ok_or_else(|| PathError::NotADirectory {
                path: display_path(name),
            })?
            .insert(name.to_vec(), child);
        Ok(())
    }

    /// Remove the entry at `path` (a directory goes with everything under it). The root cannot be removed.
    pub fn remove(&mut self, path: &[u8]) -> Result<NodeId, PathError> {
        let comps = normalize(path)?;
        let (name, parents) = comps.split_last().ok_or(PathError::Invalid {
            path: display_path(path),
            what: "cannot remove the root",
        })?;
        let mut parent_path = Vec::new();
        for p in parents {
            parent_path.push(b'/');
            parent_path.extend_from_slice(p);
        }
        let parent = self.resolve(&parent_path, true)?;
        let entries = self
            .entries_mut(parent)
            .ok_or_else(|| PathError::NotADirectory {
                path: display_path(path),
            })?;
        entries.remove(*name).ok_or_else(|| PathError::NotFound {
            path: display_path(path),
        })
    }

    /// Visit every reachable entry depth-first in name order (pre-order: a directory before its
    /// contents). The callback gets the absolute path (`/` for the root) and the node id.
    /// A directory reached twice (impossible through this API, possible through a corrupt
    /// source) is visited once.
    pub fn walk(&self, mut f: impl FnMut(&[u8], NodeId)) {
        let mut seen_dirs = vec![false; self.nodes.len()];
        let mut path = Vec::with_capacity(256);
        path.push(b'/');
        f(&path, self.root());
        seen_dirs[0] = true;
        // Stack of (directory, its entries iterator position via cloned key list index).
        let mut stack: Vec<(
            std::collections::btree_map::Iter<'_, Vec<u8>, NodeId>,
            usize,
        )> = Vec::new();
        if let Some(e) = self.entries(self.root()) {
            stack.push((e.iter(), path.len()));
        }
        while let Some((iter, base_len)) = stack.last_mut() {
            let base_len = *base_len;
            match iter.next() {
                None => {
                    stack.pop();
                }
                Some((name, &id)) => {
                    path.truncate(base_len);
                    if base_len > 1 {
                        path.push(b'/');
                    }
                    path.extend_from_slice(name);
                    f(&path, id);
                    if let NodeKind::Directory(e) = &self.node(id).kind {
                        let slot = &mut seen_dirs[id.0 as usize];
                        if !*slot {
                            *slot = true;
                            let len = path.len();
                            stack.push((e.iter(), len));
                        }
                    }
                }
            }
        }
    }

    /// Link counts of every node slot as a filesystem would store them: for non-directories the
    /// number of entries naming them; for directories 2 plus the number of subdirectories.
    /// Unreachable nodes get 0.
    pub fn link_counts(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.nodes.len()];
        counts[0] = 2;
        self.walk(|_, id| {
            if let NodeKind::Directory(entries) = &self.node(id).kind {
                if id != self.root() {
                    counts[id.0 as usize] = counts[id.0 as usize].saturating_add(2);
                }
                for &child in entries.values() {
                    if matches!(self.node(child).kind, NodeKind::Directory(_)) {
                        counts[id.0 as usize] = counts[id.0 as usize].saturating_add(1);
                    } else {
                        counts[child.0 as usize] = counts[child.0 as usize].saturating_add(1);
                    }
                }
            }
        });
        // Directory counts were incremented once per subdirectory and 2 for themselves: the walk
        // visits each directory entry once, so no correction is needed.
        counts
    }

    /// Number of reachable entries (paths), including the root.
    pub fn path_count(&self) -> usize {
        let mut n = 0;
        self.walk(|_, _| n += 1);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Metadata {
        Metadata::new(0o755, 0, 0, Timestamp::from_secs(1))
    }

    fn file(tree: &mut Tree, path: &str) -> NodeId {
        tree.insert(
            path.as_bytes(),
            Node::new(
                NodeKind::Regular(Content::from_bytes(b"x".to_vec())),
                meta(),
            ),
            &meta(),
        )
        .unwrap()
    }

    #[test]
    fn insert_creates_parents_and_walk_is_sorted() {
        let mut t = Tree::default();
        file(&mut t, "/b/z");
        file(&mut t, "a/y");
        file(&mut t, "/b/a");
        let mut seen = Vec::new();
        t.walk(|p, _| seen.push(String::from_utf8_lossy(p).into_owned()));
        assert_eq!(seen, ["/", "/a", "/a/y", "/b", "/b/a", "/b/z"]);
    }

    #[test]
    fn normalize_refuses_escape() {
        assert_eq!(
            normalize(b"a/../b/./c//").unwrap(),
            vec![&b"b"[..], &b"c"[..]]
        );
        assert!(matches!(
            normalize(b"../etc/passwd"),
            Err(PathError::Escapes { .. })
        ));
        assert!(matches!(
            normalize(b"/a/../../x"),
            Err(PathError::Escapes { .. })
        ));
        let mut t = Tree::default();
        let r = t.insert(b"a/../../evil", Node::new(NodeKind::Fifo, meta()), &meta());
        assert!(matches!(r, Err(PathError::Escapes { .. })));
    }

    #[test]
    fn symlinks_resolve_inside_the_tree() {
        let mut t = Tree::default();
        let passwd = file(&mut t, "/etc/passwd");
        t.insert(
            b"/link",
            Node::new(NodeKind::Symlink(b"/etc/passwd".to_vec()), meta()),
            &meta(),
        )
        .unwrap();
        t.insert(
            b"/up",
            Node::new(NodeKind::Symlink(b"../../../../etc".to_vec()), meta()),
            &meta(),
        )
        .unwrap();
        assert_eq!(t.resolve(b"/link", true).unwrap(), passwd);
        assert_eq!(t.resolve(b"/up/passwd", true).unwrap(), passwd);
        assert_ne!(t.resolve(b"/link", false).unwrap(), passwd);
        // A symlink in a parent position of an insert is followed inside the tree.
        let id = file(&mut t, "/up/shadow");
        assert_eq!(t.resolve(b"/etc/shadow", false).unwrap(), id);
    }

    #[test]
    fn symlink_loops_are_detected() {
        let mut t = Tree::default();
        t.insert(
            b"/a",
            Node::new(NodeKind::Symlink(b"b".to_vec()), meta()),
            &meta(),
        )
        .unwrap();
        t.insert(
            b"/b",
            Node::new(NodeKind::Symlink(b"/a".to_vec()), meta()),
            &meta(),
        )
        .unwrap();
        assert!(matches!(
            t.resolve(b"/a", true),
            Err(PathError::SymlinkLoop { .. })
        ));
        t.insert(
            b"/self",
            Node::new(NodeKind::Symlink(b"./self/x".to_vec()), meta()),
            &meta(),
        )
        .unwrap();
        assert!(matches!(
            t.resolve(b"/self", true),
            Err(PathError::SymlinkLoop { .. })
        ));
    }

    #[test]
    fn hard_links_and_link_counts() {
        let mut t = Tree::default();
        let f = file(&mut t, "/d/f");
        t.link_at(b"/e/g", f, &meta()).unwrap();
        let counts = t.link_counts();
        assert_eq!(counts[f.0 as usize], 2);
        let d = t.lookup(b"/d").unwrap();
        assert_eq!(counts[d.0 as usize], 2);
        assert_eq!(counts[0], 4); // root: 2 + two subdirectories
        let d2 = t.lookup(b"/d").unwrap();
        assert!(matches!(
            t.link_at(b"/x", d2, &meta()),
            Err(PathError::LinkToDirectory { .. })
        ));
        t.remove(b"/d").unwrap();
        assert_eq!(t.link_counts()[f.0 as usize], 1);
        assert!(t.lookup(b"/d/f").is_none());
    }

    #[test]
    fn directory_reinsert_keeps_entries() {
        let mut t = Tree::default();
        file(&mut t, "/d/f");
        t.insert(
            b"/d",
            Node::new(
                NodeKind::empty_dir(),
                Metadata::new(0o700, 5, 5, Timestamp::from_secs(9)),
            ),
            &meta(),
        )
        .unwrap();
        let d = t.lookup(b"/d").unwrap();
        assert_eq!(t.node(d).meta.uid, 5);
        assert!(t.lookup(b"/d/f").is_some());
        let r = t.insert(b"/d", Node::new(NodeKind::Fifo, meta()), &meta());
        assert!(r.is_err());
    }
}
