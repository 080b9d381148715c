//! Registry credentials and the auth challenge.
//!
//! Credentials are looked up as podman/skopeo and docker do, the first file holding an entry for
//! the registry winning: `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `~/.config/containers/auth.json`, `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
//! An entry is `auths[HOST]` (also `https://HOST`, `http://HOST`, or `https://HOST/v1/`) with
//! `auth`, base64 of `user:password` (or `username` and `password`). Credential helpers
//! (`credHelpers`, `credsStore`) are not run: a file naming one for the host is reported in the
//! log and its entry, if any, is used. Credentials are never printed or logged.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::OciError;

/// A user name and password (or token) for one registry. `Debug` shows the user only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or identity token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({:?}, <password hidden>)", self.username)
    }
}

impl Credentials {
    /// The `Authorization: Basic` value.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The auth files, in the order they are consulted.
pub fn auth_files() -> Vec<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut v = Vec::new();
    if let Some(p) = env("REGISTRY_AUTH_FILE") {
        v.push(p);
    }
    if let Some(d) = env("XDG_RUNTIME_DIR") {
        v.push(d.join("containers/auth.json"));
    }
    let home = env("HOME");
    if let Some(h) = &home {
        v.push(h.join(".config/containers/auth.json"));
    }
    match env("DOCKER_CONFIG") {
        Some(d) => v.push(d.join("config.json")),
        None => {
            if let Some(h) = &home {
                v.push(h.join(".docker/config.json"));
            }
        }
    }
    v
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Largest auth file read.
const MAX_AUTH_FILE: u64 = 1 << 20;

fn config_err(path: &Path, why: impl Into<String>) -> OciError {
    OciError::Config {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// Credentials for `host` from one auth file (`None`: the file has no entry for it; a missing
/// file is `None` too).
pub fn lookup_in(path: &Path, host: &str) -> Result<Option<Credentials>, OciError> {
    let bytes = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(OciError::io(path)(e)),
        Ok(m) if !m.is_file() => return Err(config_err(path, "not a regular file")),
        Ok(m) if m.len() > MAX_AUTH_FILE => return Err(config_err(path, "larger than 1 MiB")),
        Ok(_) => std::fs::read(path).map_err(OciError::io(path))?,
    };
    let f: AuthFile = serde_json::from_slice(&bytes)
        .map_err(|e| config_err(path, format!("not an auth file: {e}")))?;
    let keys = [
        host.to_string(),
        format!("https://{host}"),
        format!("http://{host}"),
        format!("https://{host}/v1/"),
        format!("https://{host}/v2/"),
    ];
    if f.cred_helpers.contains_key(host) || f.creds_store.is_some() {
        tracing::info!(
            file = %path.display(),
            host,
            "the auth file names a credential helper; wafer does not run helpers (use `auth` entries)"
        );
    }
    let Some(e) = keys.iter().find_map(|k| f.auths.get(k)) else {
        return Ok(None);
    };
    if let Some(a) = e.auth.as_deref().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .map_err(|_| config_err(path, format!("auths[{host:?}].auth is not base64")))?;
        let text = String::from_utf8(raw)
            .map_err(|_| config_err(path, format!("auths[{host:?}].auth is not UTF-8")))?;
        let Some((u, p)) = text.split_once(':') else {
            return Err(config_err(
                path,
                format!("auths[{host:?}].auth is not base64 of user:password"),
            ));
        };
        return Ok(Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        }));
    }
    match (&e.username, &e.password) {
        (Some(u), Some(p)) => Ok(Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        })),
        _ => Ok(None),
    }
}

/// Credentials for `host` from the first auth file ([`auth_files`]) that has an entry for it.
pub fn lookup(host: &str) -> Result<Option<Credentials>, OciError> {
    for f in auth_files() {
        if let Some(c) = lookup_in(&f, host)? {
            tracing::debug!(file = %f.display(), host, "registry credentials found");
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (lowercase).
    pub scheme: String,
    /// Its parameters (`realm`, `service`, `scope`), keys lowercase.
    pub params: BTreeMap<String, String>,
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = BTreeMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (k, after) = s.split_once('=')?;
        let k = k.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            // quoted-string, with backslash escapes
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            (v, &q[end?..])
        } else {
            let (v, n) = after.split_once(',').unwrap_or((after, ""));
            (v.trim().to_string(), n)
        };
        params.insert(k, v);
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example.org/token",service="registry.example.org",scope="repository:cms/squid:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example.org/token");
        assert_eq!(c.params["scope"], "repository:cms/squid:pull,push");
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], "Registry Realm");
        assert!(parse_challenge(r#"Bearer realm="unterminated"#).is_none());
    }

    #[test]
    fn auth_file_entries() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth.json");
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:x");
        std::fs::write(
            &p,
            format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{b64}"}},"https://other.org":{{"username":"u","password":"p"}}}}}}"#),
        )
        .unwrap();
        let c = lookup_in(&p, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cret:x")
        );
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "Debug never shows the password"
        );
        assert_eq!(lookup_in(&p, "other.org").unwrap().unwrap().username, "u");
        assert_eq!(lookup_in(&p, "nowhere").unwrap(), None);
        assert_eq!(lookup_in(&d.path().join("missing"), "x").unwrap(), None);
        std::fs::write(&p, r#"{"auths":{"h":{"auth":"!!"}}}"#).unwrap();
        assert!(lookup_in(&p, "h").is_err());
    }
}
