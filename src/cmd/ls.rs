//! `wafer ls`: list every path of an ext image, tar archive, directory or wafer bundle.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use bundle::source::open_source;
use clap::Args;
use rayon::prelude::*;
use rootfs::content::{HashBudget, HashError};
use rootfs::escape::escape_bytes;
use rootfs::{NodeId, NodeKind, Tree};
use sha2::{Digest, Sha256};

use super::Ui;

/// List the files of an image, archive or directory.
#[derive(Args, Debug)]
#[command(
    long_about = "List every path of an ext2/3/4 image, a tar archive (plain or gzip/xz/bzip2/zstd),\n\
        a directory or a wafer bundle, in name order, with type, mode, owner, size, link target,\n\
        device numbers, extended attributes and the sha256 of each regular file's contents.\n\
        The kind of IMAGE is told by its content, not its name. Nothing is mounted or extracted.\n\
        Hashing stays within budgets (--hash-max-file, --hash-holes): a file over one shows\n\
        \"not-hashed\" (--long, with a warning naming it) or \"not_hashed\": REASON (--json).\n\
        A path longer than --max-path bytes is an error.\n\n\
        Examples:\n  \
        wafer ls disk.img                 # paths only\n  \
        wafer ls disk.img --long          # like ls -l, plus sha256\n  \
        wafer ls rootfs.tar.xz --json     # machine-readable, xattr values as text or hex\n  \
        wafer ls disk.img --long --no-hash"
)]
pub struct LsArgs {
    /// The ext image, tar archive, directory or wafer bundle to list.
    pub image: PathBuf,
    /// One line per path: mode, uid, gid, size (or major,minor), mtime, sha256, path [-> target] [xattr names].
    #[arg(short, long)]
    pub long: bool,
    /// A JSON array with one object per path (all fields, xattr values included).
    #[arg(long, conflicts_with = "long")]
    pub json: bool,
    /// Do not hash file contents (faster; sha256 is shown as "-"/null).
    #[arg(long)]
    pub no_hash: bool,
}

/// The sha256 of one regular file, or why it was not hashed (a budget of [`super::Budgets`]).
pub type FileHash = std::result::Result<[u8; 32], String>;

/// sha256 of every regular file, by node, computed in parallel with a fixed buffer per task,
/// within `budget`: a file over a budget gets the reason it was not hashed instead; a read error
/// is an error.
pub fn hash_contents(tree: &Tree, budget: &HashBudget, ui: &Ui) -> Result<Vec<Option<FileHash>>> {
    let mut ids: Vec<NodeId> = Vec::new();
    let mut seen = vec![false; tree.node_slots()];
    tree.walk(|_, id| {
        if let NodeKind::Regular(_) = tree.node(id).kind {
            if !std::mem::replace(&mut seen[id.0 as usize], true) {
                ids.push(id);
            }
        }
    });
    let pb = ui.progress(ids.len() as u64, "hashing");
    let hashes: Vec<(NodeId, FileHash)> = ids
        .par_iter()
        .map_init(
            || vec![0u8; 256 * 1024],
            |buf, &id| -> Result<(NodeId, FileHash)> {
                let NodeKind::Regular(c) = &tree.node(id).kind else {
                    return Ok((id, Ok(Sha256::digest(b"").into())));
                };
                let h = match c.sha256(budget, buf) {
                    Ok(h) => Ok(h),
                    Err(HashError::NotHashed(why)) => Err(why),
                    Err(HashError::Io(e)) => {
                        return Err(e).with_context(|| {
                            format!("reading the contents of node {} ({:?})", id.0, c.source())
                        })
                    }
                };
                pb.inc(1);
                Ok((id, h))
            },
        )
        .collect::<Result<_>>()?;
    pb.finish_and_clear();
    let mut out = vec![None; tree.node_slots()];
    for (id, h) in hashes {
        out[id.0 as usize] = Some(h);
    }
    Ok(out)
}

/// Format seconds since the epoch as `YYYY-MM-DDTHH:MM:SS[.nnnnnnnnn]Z` (proleptic Gregorian, UTC).
pub fn format_time(sec: i64, nsec: u32) -> String {
    let days = sec.div_euclid(86_400);
    let secs = sec.rem_euclid(86_400);
    // Civil date from day count (era-based computation over 400-year cycles).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let base = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if nsec == 0 {
        format!("{base}Z")
    } else {
        format!("{base}.{nsec:09}Z")
    }
}

/// `ls -l` style mode string, e.g. `-rwsr-xr-x`.
pub fn mode_string(kind_char: char, perm: u16) -> String {
    let mut s = String::with_capacity(10);
    s.push(kind_char);
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (i, (bit, c)) in bits.iter().enumerate() {
        let on = perm & bit != 0;
        let special = match i {
            2 => Some((0o4000, 's', 'S')),
            5 => Some((0o2000, 's', 'S')),
            8 => Some((0o1000, 't', 'T')),
            _ => None,
        };
        match special {
            Some((sb, lower, upper)) if perm & sb != 0 => s.push(if on { lower } else { upper }),
            _ => s.push(if on { *c } else { '-' }),
        }
    }
    s
}

fn xattr_json(v: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(v) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            serde_json::json!({ "text": s })
        }
        _ => serde_json::json!({ "hex": hex::encode(v) }),
    }
}

fn entry_json(
    tree: &Tree,
    path: &[u8],
    id: NodeId,
    hashes: Option<&[Option<FileHash>]>,
    nlinks: &[u32],
) -> serde_json::Value {
    let n = tree.node(id);
    let mut o = serde_json::Map::new();
    o.insert("path".into(), String::from_utf8_lossy(path).into());
    if std::str::from_utf8(path).is_err() {
        o.insert("path_hex".into(), hex::encode(path).into());
    }
    o.insert(
        "type".into(),
        serde_json::to_value(n.file_type()).unwrap_or_default(),
    );
    o.insert("mode".into(), format!("{:04o}", n.meta.perm).into());
    o.insert("uid".into(), n.meta.uid.into());
    o.insert("gid".into(), n.meta.gid.into());
    o.insert("size".into(), n.size().into());
    o.insert(
        "nlink".into(),
        nlinks.get(id.0 as usize).copied().unwrap_or(0).into(),
    );
    o.insert(
        "mtime".into(),
        format_time(n.meta.mtime.sec, n.meta.mtime.nsec).into(),
    );
    o.insert("mtime_sec".into(), n.meta.mtime.sec.into());
    o.insert("mtime_nsec".into(), n.meta.mtime.nsec.into());
    match &n.kind {
        NodeKind::Symlink(t) => {
            o.insert("link_target".into(), String::from_utf8_lossy(t).into());
        }
        NodeKind::CharDevice(d) | NodeKind::BlockDevice(d) => {
            o.insert(
                "device".into(),
                serde_json::json!({ "major": d.major, "minor": d.minor }),
            );
        }
        NodeKind::Regular(c) => {
            o.insert("sparse".into(), c.is_sparse().into());
            let h = hashes
                .and_then(|h| h.get(id.0 as usize))
                .and_then(Option::as_ref);
            o.insert(
                "sha256".into(),
                match h {
                    Some(Ok(h)) => hex::encode(h).into(),
                    _ => serde_json::Value::Null,
                },
            );
            if let Some(Err(why)) = h {
                o.insert("not_hashed".into(), why.clone().into());
            }
        }
        _ => {}
    }
    let x: serde_json::Map<String, serde_json::Value> = n
        .meta
        .xattrs
        .iter()
        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), xattr_json(v)))
        .collect();
    o.insert("xattrs".into(), x.into());
    serde_json::Value::Object(o)
}

/// Run `wafer ls`.
pub fn run(args: LsArgs, ui: &Ui) -> Result<()> {
    let spinner = ui.spinner(&format!("reading {}", args.image.display()));
    let opened = open_source(&args.image, &ui.budgets.open_options())
        .with_context(|| format!("reading {}", args.image.display()));
    spinner.finish_and_clear();
    let opened = opened?;
    let tree = &opened.image.tree;
    let want_hash = (args.long || args.json) && !args.no_hash;
    let hashes = if want_hash {
        Some(
            hash_contents(tree, &ui.budgets.hash_budget(), ui)
                .with_context(|| format!("hashing the files of {}", args.image.display()))?,
        )
    } else {
        None
    };
    let nlinks = tree.link_counts();
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut result: io::Result<()> = Ok(());
    let mut first = true;
    if args.json {
        result = out.write_all(b"[");
    }
    let max_path = ui.budgets.max_path;
    tree.walk(|path, id| {
        if result.is_err() {
            return;
        }
        if path.len() > max_path {
            // Listing every path of a deep tree is quadratic output (a 448-byte archive can
            // hold 100,000 nested directories: 10^10 bytes of paths).
            result = Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a path of {} bytes exceeds the {max_path} byte path limit (--max-path); it starts {:?}",
                    path.len(),
                    String::from_utf8_lossy(&path[..path.len().min(200)])
                ),
            ));
            return;
        }
        result = (|| -> io::Result<()> {
            if args.json {
                if !first {
                    out.write_all(b",")?;
                }
                first = false;
                out.write_all(b"\n")?;
                serde_json::to_writer(
                    &mut out,
                    &entry_json(tree, path, id, hashes.as_deref(), &nlinks),
                )?;
            } else if args.long {
                let n = tree.node(id);
                let size = match &n.kind {
                    NodeKind::CharDevice(d) | NodeKind::BlockDevice(d) => {
                        format!("{},{}", d.major, d.minor)
                    }
                    _ => n.size().to_string(),
                };
                let hash = match (&n.kind, hashes.as_deref()) {
                    (NodeKind::Regular(_), Some(h)) => match h.get(id.0 as usize) {
                        Some(Some(Ok(h))) => hex::encode(h),
                        Some(Some(Err(why))) => {
                            tracing::warn!(
                                "{}: not hashed: {why}",
                                String::from_utf8_lossy(path)
                            );
                            "not-hashed".into()
                        }
                        _ => "-".into(),
                    },
                    _ => "-".into(),
                };
                write!(
                    out,
                    "{} {:>3} {:>6} {:>6} {:>12} {} {:<64} ",
                    mode_string(n.file_type().ls_char(), n.meta.perm),
                    nlinks.get(id.0 as usize).copied().unwrap_or(0),
                    n.meta.uid,
                    n.meta.gid,
                    size,
                    format_time(n.meta.mtime.sec, 0),
                    hash
                )?;
                // Names, link targets and xattr names come from the image: escaped (control,
                // C1 and bidi characters, invalid UTF-8 as visible escapes), one entry a line.
                out.write_all(escape_bytes(path).as_bytes())?;
                if let NodeKind::Symlink(t) = &n.kind {
                    out.write_all(b" -> ")?;
                    out.write_all(escape_bytes(t).as_bytes())?;
                }
                if !n.meta.xattrs.is_empty() {
                    out.write_all(b" [")?;
                    for (i, k) in n.meta.xattrs.keys().enumerate() {
                        if i > 0 {
                            out.write_all(b",")?;
                        }
                        out.write_all(escape_bytes(k).as_bytes())?;
                    }
                    out.write_all(b"]")?;
                }
                out.write_all(b"\n")?;
            } else {
                out.write_all(escape_bytes(path).as_bytes())?;
                out.write_all(b"\n")?;
            }
            Ok(())
        })();
    });
    if args.json && result.is_ok() {
        result = out.write_all(b"\n]\n");
    }
    result
        .and_then(|_| out.flush())
        .with_context(|| format!("listing {}", args.image.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_modes() {
        assert_eq!(format_time(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_time(951_782_400, 5),
            "2000-02-29T00:00:00.000000005Z"
        );
        assert_eq!(format_time(-1, 0), "1969-12-31T23:59:59Z");
        assert_eq!(mode_string('-', 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string('d', 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string('-', 0o2640), "-rw-r-S---");
    }
}
