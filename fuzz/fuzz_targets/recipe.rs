//! Fuzz recipes as a hostile recipe writer would: the recipe text plus files, directories,
//! FIFOs and symbolic links (with any target) in its folder, built for real. The oracle is "no
//! read outside the recipe's folder": a canary file with random content lies next to the
//! folder (and is the target of ready-made links in it); it must never appear in the built
//! image or in an error message, and nothing outside the output may change. Any other
//! outcome (a built wafer or a typed error) is fine; a panic or hang is a finding.
//!
//! Input: parts separated by "\n%%\n". Part 0 is recipe text; if the input's first byte is even
//! a header with `[wafer]` and a pinned `dir` base is put in front (so steps run), else the
//! text is the whole recipe. Each later part is `NAME\0CONTENT`: a file NAME in the folder with
//! CONTENT; CONTENT `->TARGET` makes a symbolic link, `|fifo` a FIFO, `/dir` a directory.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

struct Work {
    dir: PathBuf,
    recipe: PathBuf,
    secret: PathBuf,
    /// The canary, XOR-masked so that comparisons never hold it in clear (libFuzzer would
    /// otherwise learn it from memcmp hooks and put it in the recipe folder itself).
    masked: Vec<u8>,
    header: String,
    secret_before: Vec<(PathBuf, Vec<u8>)>,
}

const MASK: u8 = 0x5a;

fn contains_canary(w: &Work, hay: &[u8]) -> bool {
    let n = w.masked.len();
    hay.len() >= n
        && hay
            .windows(n)
            .any(|win| win.iter().zip(&w.masked).all(|(a, m)| a ^ MASK == *m))
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if md.is_dir() {
                todo.push(p.clone());
                out.push((p, b"dir".to_vec()));
            } else if md.file_type().is_symlink() {
                out.push((
                    p.clone(),
                    std::fs::read_link(&p)
                        .map(|t| t.into_os_string().into_encoded_bytes())
                        .unwrap_or_default(),
                ));
            } else if md.is_file() {
                out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

fn work() -> &'static Work {
    static W: OnceLock<Work> = OnceLock::new();
    W.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("wafer-fuzz-recipe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let secret = dir.join("secret");
        let recipe = dir.join("recipe");
        std::fs::create_dir_all(secret.join("etc")).unwrap();
        std::fs::create_dir_all(recipe.join("base/etc")).unwrap();
        let canary = format!("CANARY-{:032x}-{}", nanos ^ 0x9e37_79b9_7f4a_7c15, std::process::id());
        for f in ["canary", "etc/shadow", "etc/passwd"] {
            std::fs::write(secret.join(f), &canary).unwrap();
        }
        std::fs::write(
            recipe.join("base/etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nsquid:x:23:23::/var/spool/squid:/sbin/nologin\n",
        )
        .unwrap();
        std::fs::write(recipe.join("base/etc/group"), "root:x:0:\nsquid:x:23:\n").unwrap();
        let tree = rootfs::dir::read_dir(&recipe.join("base"), &Default::default()).unwrap();
        let sha = builder::tree_digest(&tree).unwrap();
        let header = format!(
            "[wafer]\nname = \"fuzz\"\nversion = \"1\"\nvo = \"cms\"\n[base]\nkind = \"dir\"\npath = \"base\"\nsha256 = \"{sha}\"\n"
        );
        let secret_before = snapshot(&secret);
        Work {
            masked: canary.bytes().map(|b| b ^ MASK).collect(),
            dir,
            recipe,
            secret,
            header,
            secret_before,
        }
    })
}

/// A name the harness may create: relative, no `..`, a few safe characters, not the base.
fn safe_name(name: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(name).ok()?;
    let ok = !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('/')
        && !s.starts_with("base")
        && s != "recipe.toml"
        && s.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && s.split('/').count() <= 3
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
    ok.then(|| s.to_string())
}

/// Empty the recipe folder but for the base, then put in the ready-made links.
fn reset(w: &Work) {
    if let Ok(rd) = std::fs::read_dir(&w.recipe) {
        for e in rd.flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == "base") {
                continue;
            }
            let is_dir = std::fs::symlink_metadata(&p)
                .map(|m| m.is_dir())
                .unwrap_or(false);
            let _ = if is_dir {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
    let links: [(&str, PathBuf); 5] = [
        ("l-canary", w.secret.join("canary")),
        ("l-up", PathBuf::from("../secret")),
        ("l-etc", w.secret.join("etc")),
        ("l-root", PathBuf::from("/")),
        ("l-self", PathBuf::from(".")),
    ];
    for (name, target) in links {
        let _ = std::os::unix::fs::symlink(target, w.recipe.join(name));
    }
}

fn mkfifo(p: &Path) {
    if let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) {
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    }
}

fn split<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(sep.len()).position(|w| w == sep) {
        parts.push(&rest[..i]);
        rest = &rest[i + sep.len()..];
    }
    parts.push(rest);
    parts
}

fuzz_target!(|data: &[u8]| {
    let w = work();
    if data.is_empty() || data.len() > 64 * 1024 || contains_canary(w, data) {
        return;
    }
    reset(w);
    let parts = split(&data[1..], b"\n%%\n");
    for part in parts.iter().skip(1).take(16) {
        let Some(nul) = part.iter().position(|&b| b == 0) else {
            continue;
        };
        let Some(name) = safe_name(&part[..nul]) else {
            continue;
        };
        let content = &part[nul + 1..];
        let p = w.recipe.join(&name);
        if let Some(parent) = p.parent() {
            // Never through a link the fuzzer made: the harness itself must not write outside.
            let mut prefix = w.recipe.clone();
            let through_link = name.split('/').any(|c| {
                prefix.push(c);
                std::fs::symlink_metadata(&prefix).is_ok_and(|m| !m.is_dir())
            });
            if through_link {
                continue;
            }
            if std::fs::create_dir_all(parent).is_err() {
                continue;
            }
            if !std::fs::canonicalize(parent).is_ok_and(|c| c.starts_with(&w.recipe)) {
                continue;
            }
        }
        if std::fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        if let Some(t) = content.strip_prefix(b"->") {
            let t = String::from_utf8_lossy(t).into_owned();
            let _ = std::os::unix::fs::symlink(t, &p);
        } else if content == b"|fifo" {
            mkfifo(&p);
        } else if content == b"/dir" {
            let _ = std::fs::create_dir(&p);
        } else {
            let _ = std::fs::write(&p, content);
        }
    }
    let body = String::from_utf8_lossy(parts[0]);
    let text = if data[0] % 2 == 0 {
        format!("{}{body}", w.header)
    } else {
        body.into_owned()
    };
    let recipe = w.recipe.join("recipe.toml");
    if std::fs::write(&recipe, &text).is_err() {
        return;
    }
    let out = w.dir.join("out");
    let _ = std::fs::remove_dir_all(&out);
    let mut opts = builder::BuildOptions::new(&out);
    opts.keep_raw = true;
    opts.threads = 1;
    opts.source_date_epoch = Some(1_400_000_000);
    opts.limits = builder::Limits {
        template_file: 64 << 10,
        template_total: 256 << 10,
        input_memory: 1 << 20,
    };
    match builder::build(&recipe, &opts, &builder::NoProgress) {
        Ok(_) => {
            let raw = std::fs::read(out.join("disk.img")).unwrap_or_default();
            assert!(!contains_canary(w, &raw), "the canary reached the image");
            for f in ["wafer.json", "build-report.json"] {
                let b = std::fs::read(out.join(f)).unwrap_or_default();
                assert!(!contains_canary(w, &b), "the canary reached {f}");
            }
        }
        Err(e) => {
            assert!(
                !contains_canary(w, e.to_string().as_bytes()),
                "the canary reached an error: {e}"
            );
        }
    }
    assert!(
        snapshot(&w.secret) == w.secret_before,
        "something outside the output changed"
    );
    let _ = std::fs::remove_dir_all(&out);
});
