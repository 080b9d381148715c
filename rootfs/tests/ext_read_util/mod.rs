//! Shared helpers of the ext reader tests: run debugfs in batch mode over an image and compare
//! everything it says with what our reader built.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rootfs::content::FileSource;
use rootfs::ext::{read_image, ExtImage, ReadOptions};
use rootfs::{NodeId, NodeKind, ReadAt, Tree};

/// Path of a fixture file in testdata/.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/ext-images-ext4-view-rs"
    ))
    .join(name)
}

/// Decompress a `.zst` fixture into `dir`, returning the raw image path.
pub fn unpack(name: &str, dir: &Path) -> PathBuf {
    let src = fixture(&format!("{name}.zst"));
    let out = dir.join(name);
    let data =
        zstd::decode_all(fs::File::open(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display())))
            .unwrap();
    fs::write(&out, data).unwrap();
    out
}

/// Read an image file with our reader.
pub fn read(path: &Path, opts: &ReadOptions) -> ExtImage {
    let src: Arc<dyn ReadAt> = Arc::new(FileSource::open(path).unwrap());
    read_image(src, opts).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Run `cmd`; panics with its stderr when it fails or cannot start (the tool must exist).
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is e2fsprogs installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run debugfs with `cmds` (one per line) on `img`; returns the output of each command.
pub fn debugfs_batch(img: &Path, cmds: &[String], work: &Path) -> Vec<String> {
    let mut outputs = Vec::with_capacity(cmds.len());
    for chunk in cmds.chunks(4000) {
        let cmdfile = work.join("debugfs.cmds");
        fs::write(&cmdfile, chunk.join("\n") + "\n").unwrap();
        let out = run(Command::new("debugfs").arg("-f").arg(&cmdfile).arg(img));
        let mut cur: Option<String> = None;
        let mut got = Vec::new();
        for line in out.lines() {
            if let Some(rest) = line.strip_prefix("debugfs: ") {
                if let Some(c) = cur.take() {
                    got.push(c);
                }
                let _ = rest;
                cur = Some(String::new());
            } else if let Some(c) = cur.as_mut() {
                c.push_str(line);
                c.push('\n');
            }
        }
        if let Some(c) = cur.take() {
            got.push(c);
        }
        assert_eq!(
            got.len(),
            chunk.len(),
            "debugfs answered {} of {} commands",
            got.len(),
            chunk.len()
        );
        outputs.extend(got);
    }
    outputs
}

fn quote(p: &[u8]) -> String {
    let s = String::from_utf8(p.to_vec()).expect("test paths are UTF-8");
    assert!(
        !s.contains('"') && !s.contains(' '),
        "test paths must not need escaping: {s}"
    );
    format!("\"{s}\"")
}

/// Field `key` followed by a value in a debugfs `stat` output (e.g. "Size: 13").
fn stat_field<'a>(stat: &'a str, key: &str) -> Option<&'a str> {
    let pos = stat.find(key)?;
    stat[pos + key.len()..].split_whitespace().next()
}

fn stat_time(stat: &str, key: &str) -> Option<(u32, Option<u32>)> {
    let line = stat.lines().find(|l| l.trim_start().starts_with(key))?;
    let v = line.trim_start()[key.len()..].split_whitespace().next()?;
    let v = v.strip_prefix("0x")?;
    let mut parts = v.split(':');
    let secs = u32::from_str_radix(parts.next()?, 16).ok()?;
    let extra = parts.next().map(|x| u32::from_str_radix(x, 16).unwrap());
    Some((secs, extra))
}

/// What [`compare_with_debugfs`] checked.
#[derive(Debug, Default)]
pub struct Checked {
    pub paths: usize,
    pub contents: usize,
    pub content_bytes: u64,
    pub xattrs: usize,
    pub symlinks: usize,
    pub devices: usize,
}

/// Compare our tree with debugfs on every path below the root, except under `skip` prefixes
/// (e.g. an encrypted directory whose names debugfs cannot show):
/// inode numbers (so hard links), type, mode, uid, gid, size, all four times with nanoseconds,
/// symlink targets, device numbers, xattr names and values, and every regular file's bytes.
pub fn compare_with_debugfs(img: &Path, image: &ExtImage, skip: &[&str], work: &Path) -> Checked {
    let tree = &image.tree;
    let mut items: Vec<(Vec<u8>, NodeId)> = Vec::new();
    tree.walk(|p, id| items.push((p.to_vec(), id)));
    items.retain(|(p, _)| {
        let s = String::from_utf8_lossy(p);
        !skip.iter().any(|k| s.starts_with(k) && s.len() > k.len())
    });
    let mut checked = Checked::default();

    // Batch 1: ls -p of every directory, stat and ea_list of every path.
    let mut cmds = Vec::new();
    for (p, id) in &items {
        if matches!(tree.node(*id).kind, NodeKind::Directory(_))
            && !skip.iter().any(|k| String::from_utf8_lossy(p) == *k)
        {
            cmds.push(format!("ls -p {}", quote(p)));
        }
        cmds.push(format!("stat {}", quote(p)));
        cmds.push(format!("ea_list {}", quote(p)));
    }
    let outs = debugfs_batch(img, &cmds, work);
    let mut out_of: BTreeMap<String, String> = BTreeMap::new();
    for (c, o) in cmds.iter().zip(outs) {
        out_of.insert(c.clone(), o);
    }

    let mut dumps = Vec::new();
    let mut inline = std::collections::HashSet::new();
    let mut ea_gets = Vec::new();
    for (p, id) in &items {
        let node = tree.node(*id);
        let shown = String::from_utf8_lossy(p).into_owned();
        checked.paths += 1;
        // Directory listings: names, inode numbers, modes, owners and sizes of the children.
        if let NodeKind::Directory(entries) = &node.kind {
            if let Some(ls) = out_of.get(&format!("ls -p {}", quote(p))) {
                let mut theirs = BTreeMap::new();
                for line in ls.lines().filter(|l| l.starts_with('/')) {
                    let f: Vec<&str> = line.split('/').collect();
                    // "/ino/mode/uid/gid/name/size/"
                    assert!(f.len() >= 7, "{shown}: odd ls line {line}");
                    let name = f[5..f.len() - 2].join("/");
                    if name == "." || name == ".." || f[1] == "0" {
                        continue;
                    }
                    theirs.insert(
                        name.into_bytes(),
                        (
                            f[1].to_string(),
                            f[2].to_string(),
                            f[3].to_string(),
                            f[4].to_string(),
                            f[f.len() - 2].to_string(),
                        ),
                    );
                }
                let ours: Vec<&Vec<u8>> = entries.keys().collect();
                let their_names: Vec<&Vec<u8>> = theirs.keys().collect();
                assert_eq!(ours, their_names, "{shown}: entry names differ");
                for (name, &cid) in entries {
                    let c = tree.node(cid);
                    let (ino, mode, uid, gid, size) = &theirs[name];
                    let what = format!("{shown}/{}", String::from_utf8_lossy(name));
                    assert_eq!(ino, &c.source_ino.to_string(), "{what}: inode");
                    assert_eq!(mode, &format!("{:06o}", c.mode()), "{what}: mode");
                    assert_eq!(uid, &c.meta.uid.to_string(), "{what}: uid");
                    assert_eq!(gid, &c.meta.gid.to_string(), "{what}: gid");
                    if !matches!(c.kind, NodeKind::Directory(_)) {
                        assert_eq!(size, &c.size().to_string(), "{what}: size");
                    }
                }
            }
        }
        let stat = &out_of[&format!("stat {}", quote(p))];
        assert_eq!(
            stat_field(stat, "Inode:"),
            Some(node.source_ino.to_string().as_str()),
            "{shown}: inode\n{stat}"
        );
        assert_eq!(
            stat_field(stat, "User:"),
            Some(node.meta.uid.to_string().as_str()),
            "{shown}: uid"
        );
        assert_eq!(
            stat_field(stat, "Group:"),
            Some(node.meta.gid.to_string().as_str()),
            "{shown}: gid"
        );
        let mode = stat_field(stat, "Mode:").unwrap();
        assert_eq!(
            u32::from_str_radix(mode, 8).unwrap(),
            u32::from(node.meta.perm),
            "{shown}: perm"
        );
        if !matches!(node.kind, NodeKind::Directory(_)) {
            assert_eq!(
                stat_field(stat, "Size:"),
                Some(node.size().to_string().as_str()),
                "{shown}: size"
            );
        }
        for (key, t) in [
            ("ctime:", node.meta.ctime),
            ("atime:", node.meta.atime),
            ("mtime:", node.meta.mtime),
        ] {
            let (secs, extra) =
                stat_time(stat, key).unwrap_or_else(|| panic!("{shown}: no {key} in\n{stat}"));
            assert_eq!(secs, t.sec as u32, "{shown}: {key} seconds");
            if let Some(x) = extra {
                assert_eq!(x >> 2, t.nsec, "{shown}: {key} nanoseconds");
                assert_eq!(
                    i64::from(x & 3),
                    (t.sec - i64::from(t.sec as i32)) >> 32,
                    "{shown}: {key} epoch bits"
                );
            } else {
                assert_eq!(t.nsec, 0, "{shown}: {key} nanoseconds");
            }
        }
        match (stat_time(stat, "crtime:"), node.meta.crtime) {
            (Some((secs, extra)), Some(t)) => {
                assert_eq!(secs, t.sec as u32, "{shown}: crtime");
                assert_eq!(
                    extra.map(|x| x >> 2).unwrap_or(0),
                    t.nsec,
                    "{shown}: crtime nsec"
                );
            }
            (None, None) => {}
            (a, b) => panic!("{shown}: crtime debugfs {a:?} ours {b:?}"),
        }
        match &node.kind {
            NodeKind::CharDevice(d) | NodeKind::BlockDevice(d) => {
                let line = stat
                    .lines()
                    .find(|l| l.contains("Device major/minor number:"))
                    .unwrap_or_else(|| panic!("{shown}: {stat}"));
                let hexpart = line.split("(hex ").nth(1).unwrap().trim_end_matches(')');
                let mut mm = hexpart.split(':');
                let major = u32::from_str_radix(mm.next().unwrap(), 16).unwrap();
                let minor = u32::from_str_radix(mm.next().unwrap(), 16).unwrap();
                assert_eq!((major, minor), (d.major, d.minor), "{shown}: device");
                checked.devices += 1;
            }
            NodeKind::Symlink(target) => {
                checked.symlinks += 1;
                if let Some(line) = stat.lines().find(|l| l.starts_with("Fast link dest: ")) {
                    let t = line
                        .trim_start_matches("Fast link dest: ")
                        .trim_matches('"');
                    assert_eq!(
                        t.as_bytes(),
                        target.as_slice(),
                        "{shown}: fast symlink target"
                    );
                } else {
                    let out = work.join(format!("dump{}", dumps.len()));
                    dumps.push((
                        format!("dump {} {}", quote(p), out.display()),
                        out,
                        p.clone(),
                        *id,
                    ));
                }
            }
            NodeKind::Regular(_) => {
                let out = work.join(format!("dump{}", dumps.len()));
                if stat.contains("Size of inline data") {
                    inline.insert(*id);
                }
                dumps.push((
                    format!("dump {} {}", quote(p), out.display()),
                    out,
                    p.clone(),
                    *id,
                ));
            }
            _ => {}
        }
        // xattrs: names from ea_list (system.data is inline data, not an attribute here).
        let eal = &out_of[&format!("ea_list {}", quote(p))];
        let mut names: Vec<Vec<u8>> = Vec::new();
        for line in eal.lines().filter(|l| l.starts_with("  ")) {
            let name = line.trim_start().split(" (").next().unwrap();
            if name == "system.data" || !name.contains('.') {
                continue; // inline data, or an attribute with no namespace (fscrypt context "c")
            }
            names.push(name.as_bytes().to_vec());
        }
        let ours: Vec<Vec<u8>> = node.meta.xattrs.keys().cloned().collect();
        names.sort();
        assert_eq!(ours, names, "{shown}: xattr names\n{eal}");
        for name in names {
            let out = work.join(format!("ea{}", ea_gets.len()));
            ea_gets.push((
                format!(
                    "ea_get -f {} {} {}",
                    out.display(),
                    quote(p),
                    String::from_utf8(name.clone()).unwrap()
                ),
                out,
                p.clone(),
                *id,
                name,
            ));
        }
    }

    // Batch 2: dump contents and xattr values, compare bytes.
    let cmds: Vec<String> = dumps
        .iter()
        .map(|d| d.0.clone())
        .chain(ea_gets.iter().map(|e| e.0.clone()))
        .collect();
    debugfs_batch(img, &cmds, work);
    for (_, out, p, id) in &dumps {
        let shown = String::from_utf8_lossy(p);
        let mut theirs =
            fs::read(out).unwrap_or_else(|e| panic!("{shown}: debugfs dump missing: {e}"));
        if let (true, NodeKind::Regular(c)) = (inline.contains(id), &tree.node(*id).kind) {
            // debugfs 1.47.0 dumps an inline-data file padded with zeros to the 60 bytes of
            // i_block; the bytes past the size must be zeros.
            if theirs.len() as u64 > c.size() {
                assert!(
                    theirs[c.size() as usize..].iter().all(|&b| b == 0),
                    "{shown}: inline data past the size"
                );
                theirs.truncate(c.size() as usize);
            }
        }
        match &tree.node(*id).kind {
            NodeKind::Regular(c) => {
                assert_eq!(c.size(), theirs.len() as u64, "{shown}: dumped size");
                let mut ours = Vec::with_capacity(theirs.len());
                c.reader().unwrap().read_to_end(&mut ours).unwrap();
                assert!(ours == theirs, "{shown}: contents differ");
                checked.contents += 1;
                checked.content_bytes += theirs.len() as u64;
            }
            NodeKind::Symlink(t) => assert_eq!(t, &theirs, "{shown}: slow symlink target"),
            _ => unreachable!(),
        }
        fs::remove_file(out).unwrap();
    }
    for (_, out, p, id, name) in &ea_gets {
        let theirs = fs::read(out)
            .unwrap_or_else(|e| panic!("{}: ea_get missing: {e}", String::from_utf8_lossy(p)));
        let ours = tree.node(*id).meta.xattrs.get(name).cloned();
        let (ours, theirs) = if name.starts_with(b"system.posix_acl_") {
            (
                ours.map(|v| acl_ids_normalised(&v)),
                acl_ids_normalised(&theirs),
            )
        } else {
            (ours, theirs)
        };
        assert_eq!(
            ours,
            Some(theirs),
            "{}: xattr {} value",
            String::from_utf8_lossy(p),
            String::from_utf8_lossy(name)
        );
        checked.xattrs += 1;
    }
    checked
}

/// Paths of a tree (for quick assertions).
pub fn paths(tree: &Tree) -> Vec<String> {
    let mut v = Vec::new();
    tree.walk(|p, _| v.push(String::from_utf8_lossy(p).into_owned()));
    v
}

/// POSIX ACL xattr (version 2) with the ids of the owner/group/mask/other entries set to 0:
/// the kernel writes ACL_UNDEFINED_ID (0xffffffff) there, debugfs writes 0.
pub fn acl_ids_normalised(v: &[u8]) -> Vec<u8> {
    let mut out = v.to_vec();
    let mut pos = 4;
    while pos + 8 <= out.len() {
        let tag = u16::from_le_bytes([out[pos], out[pos + 1]]);
        if matches!(tag, 0x01 | 0x04 | 0x10 | 0x20) {
            out[pos + 4..pos + 8].fill(0);
        }
        pos += 8;
    }
    out
}
