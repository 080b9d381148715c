//! A real OCI registry for the tests: Debian's `docker-registry` (CNCF distribution 2.8) on
//! 127.0.0.1 at a free port, with its own config file and storage folder in a temporary folder,
//! killed when dropped; and the `wafer demo` bundles as test data.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// A running registry.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The port.
    pub port: u16,
    /// Holds config.yml and the storage folder `data/`.
    pub dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a plain-HTTP registry.
    pub fn start() -> Registry {
        Registry::start_with("")
    }

    /// Starts a registry whose `http:` section gets `http_extra` (indented by 2, e.g. a `tls:`
    /// block) and with `top_extra` appended at top level (e.g. an `auth:` block).
    pub fn start_full(http_extra: &str, top_extra: &str) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        // A free port: bound and released (the registry binds it a moment later).
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{http_extra}{top_extra}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run docker-registry ({e}): install the Debian package docker-registry"
                )
            });
        let r = Registry {
            child,
            host: format!("127.0.0.1:{port}"),
            port,
            dir,
        };
        // Wait until it listens (bounded: 600 tries of 25 ms).
        for _ in 0..600 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("docker-registry did not start listening on {}", r.host);
    }

    /// Starts a registry with extra top-level config.
    pub fn start_with(top_extra: &str) -> Registry {
        Registry::start_full("", top_extra)
    }

    /// `127.0.0.1:PORT/REPO`.
    pub fn repo(&self, repo: &str) -> String {
        format!("{}/{repo}", self.host)
    }

    /// The storage file of a blob.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// A plain HTTP/1.1 request to the registry (no auth); returns the status and body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = match out.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(i) => out[i + 4..].to_vec(),
            None => Vec::new(),
        };
        (status, body)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `wafer demo` folder, made once per test binary: `wafers/squid-fixed` (approved by the
/// demo reviewer), `wafers/squid-planted` (another wafer, no approval), `trust/`,
/// `keys/demo-reviewer.key`, `recipe/demo-policy.toml`, `reports/vet-fixed.json`.
pub fn demo() -> &'static Path {
    static DEMO: OnceLock<tempfile::TempDir> = OnceLock::new();
    DEMO.get_or_init(|| {
        let d = tempfile::tempdir().expect("tempdir");
        let path = std::env::var_os("PATH").unwrap_or_default();
        let dirs: Vec<PathBuf> = std::env::split_paths(&path)
            .filter(|d| !d.join("xl").exists())
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_wafer"))
            .env("PATH", std::env::join_paths(dirs).unwrap())
            .arg("--quiet")
            .arg("demo")
            .arg(d.path().join("demo"))
            .output()
            .expect("run wafer demo");
        assert!(
            out.status.success(),
            "wafer demo failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        d
    })
    .path()
    .join("demo")
    .leak()
}

/// Every file under `dir` (relative path, sha256), sorted: two folders with the same list hold
/// the same bytes.
pub fn tree_digest(dir: &Path) -> Vec<(String, String)> {
    use sha2::{Digest, Sha256};
    fn walk(root: &Path, d: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((rel, hex::encode(Sha256::digest(std::fs::read(&p).unwrap()))));
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// Copies a bundle folder (one level of subfolders).
pub fn copy_bundle(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("attestations")).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    for e in std::fs::read_dir(from.join("attestations")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join("attestations").join(e.file_name())).unwrap();
    }
}

/// Nothing named like `name` or a temporary of it in `parent`.
pub fn nothing_written(parent: &Path, name: &str) -> bool {
    std::fs::read_dir(parent).unwrap().flatten().all(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        n != name && !n.contains("wafer-tmp")
    })
}
