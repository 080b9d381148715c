//! Batched `debugfs` runs and parsers for the outputs the Debian test asks for
//! (`ls -p`, `stat`), plus `e2fsck -fn`.

use std::path::Path;
use std::process::Command;

/// A debugfs request `verb "arg" rest...` as raw bytes (file names need not be UTF-8).
/// Names holding `"` or a newline cannot be quoted for debugfs: those fail the test loudly.
pub fn req(verb: &str, path: &[u8], rest: &str) -> Vec<u8> {
    assert!(
        !path.contains(&b'"') && !path.contains(&b'\n'),
        "{}: cannot be quoted for debugfs",
        String::from_utf8_lossy(path)
    );
    let mut v = format!("{verb} \"").into_bytes();
    v.extend_from_slice(path);
    v.push(b'"');
    if !rest.is_empty() {
        v.push(b' ');
        v.extend_from_slice(rest.as_bytes());
    }
    v
}

/// Run `debugfs -f CMDFILE IMG` (read-only) with one request per element; return the output of
/// each request, in order. debugfs echoes each request as a `debugfs: ...` line on stdout,
/// which is how the outputs are told apart.
pub fn batch(img: &Path, cmds: &[Vec<u8>]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("cmds");
    let mut all = Vec::new();
    for c in cmds {
        all.extend_from_slice(c);
        all.push(b'\n');
    }
    std::fs::write(&file, all).expect("write debugfs command file");
    let out = Command::new("debugfs")
        .arg("-f")
        .arg(&file)
        .arg(img)
        .output()
        .expect("debugfs must be installed (Debian package e2fsprogs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "debugfs -f on {} failed: {stderr}",
        img.display()
    );
    let mut parts: Vec<String> = Vec::new();
    for line in stdout.lines() {
        if line.starts_with("debugfs: ") {
            parts.push(String::new());
        } else if let Some(p) = parts.last_mut() {
            p.push_str(line);
            p.push('\n');
        }
    }
    assert_eq!(
        parts.len(),
        cmds.len(),
        "debugfs answered {} of {} requests on {}; stderr:\n{stderr}",
        parts.len(),
        cmds.len(),
        img.display()
    );
    // Errors (e.g. "File not found by ext2_lookup") go to stderr without a request echo there;
    // a non-empty stderr beyond the banner means some request failed.
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
        .collect();
    assert!(
        errors.is_empty(),
        "debugfs on {} reported errors:\n{}",
        img.display(),
        errors.join("\n")
    );
    parts
}

/// One line of `ls -p`: `/INO/MODE/UID/GID/NAME/SIZE/` (SIZE empty for directories).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LsEntry {
    pub ino: u64,
    /// Full `i_mode` (type and permission bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    /// File size; `None` for directories.
    pub size: Option<u64>,
}

/// Parse the output of one `ls -p` request (`.` and `..` included).
pub fn parse_ls_p(out: &str) -> Vec<LsEntry> {
    let mut v = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('/').collect();
        assert!(
            f.len() == 8 && f[0].is_empty() && f[7].is_empty(),
            "unexpected `ls -p` line {line:?}"
        );
        let num = |s: &str, radix: u32| {
            u64::from_str_radix(s, radix)
                .unwrap_or_else(|_| panic!("`ls -p` line {line:?}: bad number {s:?}"))
        };
        v.push(LsEntry {
            ino: num(f[1], 10),
            mode: num(f[2], 8) as u32,
            uid: num(f[3], 10) as u32,
            gid: num(f[4], 10) as u32,
            name: f[5].to_string(),
            size: if f[6].is_empty() {
                None
            } else {
                Some(num(f[6], 10))
            },
        });
    }
    v
}

/// What the Debian test needs from one `stat`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub ino: u64,
    pub device: Option<(u32, u32)>,
    pub xattr_names: Vec<String>,
}

/// Parse the output of one `stat` request.
pub fn parse_stat(out: &str) -> Stat {
    let mut st = Stat::default();
    let mut in_xattr = false;
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("Inode: ") {
            st.ino = rest
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
        }
        if let Some((_, rest)) = line.split_once("Device major/minor number: ") {
            let v = rest.split_whitespace().next().unwrap_or("");
            let (a, b) = v
                .split_once(':')
                .unwrap_or_else(|| panic!("stat device line {line:?}"));
            let n = |s: &str| {
                s.parse::<u32>()
                    .unwrap_or_else(|_| panic!("stat device line {line:?}"))
            };
            st.device = Some((n(a), n(b)));
        }
        if line.starts_with("Extended attributes:") {
            in_xattr = true;
            continue;
        }
        if in_xattr {
            match line.strip_prefix("  ") {
                Some(rest) => st
                    .xattr_names
                    .push(rest.split(" (").next().unwrap_or(rest).to_string()),
                None => in_xattr = false,
            }
        }
    }
    st
}

/// `e2fsck -fn IMG` must exit 0.
pub fn fsck(img: &Path) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(img)
        .output()
        .expect("e2fsck must be installed (Debian package e2fsprogs)");
    assert!(
        out.status.success(),
        "e2fsck -fn {} exited {:?}:\n{}\n{}",
        img.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
