//! OpenSSH `sshd_config` (sshd_config(5)): `Port`, `ListenAddress`, `Include`,
//! `PermitRootLogin`, `PasswordAuthentication`. Default port 22. Keywords are case-insensitive;
//! for single-valued keywords the first value obtained wins; settings inside `Match` blocks
//! apply only to matching connections and do not set the global value.

use rootfs::Tree;
use serde::Serialize;

use super::include::Includes;
use super::{ConfigPorts, Port};
use crate::util;
use crate::{Problem, Provenance};

/// A configured value and where it was set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Setting {
    /// The value as written.
    pub value: String,
    /// Where.
    pub at: Provenance,
}

/// What sshd_config says.
#[derive(Clone, Debug, Default)]
pub struct SshdConfig {
    /// `Port` lines.
    pub ports: Vec<(u16, Provenance)>,
    /// `ListenAddress` lines: address, optional port.
    pub listen: Vec<(String, Option<u16>, Provenance)>,
    /// Global `PermitRootLogin`.
    pub permit_root_login: Option<Setting>,
    /// Global `PasswordAuthentication`.
    pub password_authentication: Option<Setting>,
    /// Files read.
    pub files: Vec<String>,
    /// Remarks.
    pub notes: Vec<String>,
}

/// Split `host:port`, `[v6]:port`, `[v6]`, bare v6 or bare host.
pub fn split_host_port(s: &str) -> (String, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, tail)) = rest.split_once(']') {
            let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
            return (h.to_string(), port);
        }
    }
    if s.matches(':').count() == 1 {
        if let Some((h, p)) = s.rsplit_once(':') {
            return (h.to_string(), p.parse().ok());
        }
    }
    (s.to_string(), None)
}

fn walk(
    tree: &Tree,
    path: &str,
    depth: usize,
    in_match: bool,
    inc: &mut Includes,
    cfg: &mut SshdConfig,
    problems: &mut Vec<Problem>,
) {
    let Some(text) = inc.open(tree, path, depth, problems) else {
        return;
    };
    let mut in_match = in_match;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.find(|c: char| c.is_whitespace() || c == '=') {
            Some(p) => (
                &line[..p],
                line[p..]
                    .trim_start_matches(|c: char| c.is_whitespace() || c == '=')
                    .trim(),
            ),
            None => (line, ""),
        };
        let value = value
            .split('#')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        let key = key.to_ascii_lowercase();
        let at = || Provenance::line(path, i + 1, raw);
        match key.as_str() {
            "match" => in_match = !value.eq_ignore_ascii_case("all"),
            "include" => {
                for pat in value.split_whitespace() {
                    let pat = if pat.starts_with('/') {
                        pat.to_string()
                    } else {
                        util::join("/etc/ssh", pat)
                    };
                    for f in util::glob(tree, &pat, super::include::MAX_FILES) {
                        walk(tree, &f, depth + 1, in_match, inc, cfg, problems);
                    }
                }
            }
            "port" if !in_match => match value.parse::<u16>() {
                Ok(p) => cfg.ports.push((p, at())),
                Err(_) => problems.push(Problem {
                    path: path.into(),
                    message: format!("line {}: bad Port {value:?}", i + 1),
                }),
            },
            "listenaddress" if !in_match => {
                let addr = value.split_whitespace().next().unwrap_or("");
                let (h, p) = split_host_port(addr);
                cfg.listen.push((h, p, at()));
            }
            "permitrootlogin" => {
                if in_match {
                    cfg.notes.push(format!(
                        "{path}:{}: PermitRootLogin {value} inside a Match block",
                        i + 1
                    ));
                } else if cfg.permit_root_login.is_none() {
                    cfg.permit_root_login = Some(Setting {
                        value: value.to_string(),
                        at: at(),
                    });
                }
            }
            "passwordauthentication" => {
                if in_match {
                    cfg.notes.push(format!(
                        "{path}:{}: PasswordAuthentication {value} inside a Match block",
                        i + 1
                    ));
                } else if cfg.password_authentication.is_none() {
                    cfg.password_authentication = Some(Setting {
                        value: value.to_string(),
                        at: at(),
                    });
                }
            }
            _ => {}
        }
    }
    inc.close();
}

/// Parse the sshd configuration starting at `path`.
pub fn parse(tree: &Tree, path: &str, problems: &mut Vec<Problem>) -> SshdConfig {
    let mut cfg = SshdConfig::default();
    let mut inc = Includes::new();
    walk(tree, path, 0, false, &mut inc, &mut cfg, problems);
    cfg.files = inc.files;
    cfg
}

/// Resolve the listening sockets: each ListenAddress with its own port or with every Port;
/// no ListenAddress means all addresses on every Port; no Port means 22.
pub fn sockets(cfg: &SshdConfig, config_path: &str) -> ConfigPorts {
    let mut out = ConfigPorts {
        files: cfg.files.clone(),
        notes: cfg.notes.clone(),
        ..Default::default()
    };
    let ports: Vec<(u16, Provenance, bool)> = if cfg.ports.is_empty() {
        vec![(
            22,
            Provenance::file(config_path, Some("default Port 22".into())),
            true,
        )]
    } else {
        cfg.ports
            .iter()
            .map(|(p, at)| (*p, at.clone(), false))
            .collect()
    };
    if cfg.listen.is_empty() {
        for (p, at, d) in &ports {
            out.ports.push(Port::new(*p, "tcp", None, *d, at.clone()));
        }
    } else {
        for (addr, port, at) in &cfg.listen {
            match port {
                Some(p) => {
                    out.ports
                        .push(Port::new(*p, "tcp", Some(addr.clone()), false, at.clone()))
                }
                None => {
                    for (p, pat, d) in &ports {
                        let mut src = pat.clone();
                        if *d {
                            src = at.clone();
                        }
                        out.ports
                            .push(Port::new(*p, "tcp", Some(addr.clone()), *d, src));
                    }
                }
            }
        }
    }
    out
}

/// Ports of the image's sshd.
pub fn ports(tree: &Tree, problems: &mut Vec<Problem>) -> ConfigPorts {
    let path = "/etc/ssh/sshd_config";
    let cfg = parse(tree, path, problems);
    let mut out = sockets(&cfg, path);
    if cfg.files.is_empty() {
        out.notes
            .push(format!("{path} not found; sshd defaults assumed"));
    }
    out
}
