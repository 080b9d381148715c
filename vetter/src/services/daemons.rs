//! Port parsers for daemon configurations other than sshd: squid, MySQL/MariaDB, Apache httpd,
//! vsftpd, named, rpcbind/portmap, xrootd, globus-gatekeeper and GridFTP. Each follows its
//! includes through [`Includes`] (loop, depth, count and size caps) and reports the file and line
//! that sets each port, or the built-in default.

use rootfs::Tree;

use super::include::{Includes, MAX_FILES};
use super::sshd::split_host_port;
use super::{ConfigPorts, Port};
use crate::util;
use crate::{Problem, Provenance};

/// Parse `[addr:]port`: `3128`, `1.2.3.4:3128`, `[::1]:3128`, `host:3128`.
pub fn addr_port(s: &str) -> Option<(Option<String>, u16)> {
    if let Ok(p) = s.parse::<u16>() {
        return Some((None, p));
    }
    let (h, p) = split_host_port(s);
    Some((Some(h).filter(|h| !h.is_empty()), p?))
}

fn first_existing(tree: &Tree, paths: &[&str]) -> Option<String> {
    paths
        .iter()
        .find(|p| util::exists(tree, p))
        .map(|p| p.to_string())
}

fn strip_comment(line: &str) -> &str {
    line.split('#').next().unwrap_or("").trim()
}

// ---------------------------------------------------------------- squid

fn squid_walk(
    tree: &Tree,
    path: &str,
    depth: usize,
    inc: &mut Includes,
    out: &mut ConfigPorts,
    http_seen: &mut bool,
    problems: &mut Vec<Problem>,
) {
    let Some(text) = inc.open(tree, path, depth, problems) else {
        return;
    };
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        let mut it = line.split_whitespace();
        let Some(key) = it.next() else { continue };
        let arg = it.next().unwrap_or("");
        let at = || Provenance::line(path, i + 1, raw);
        match key {
            "include" => {
                for f in util::glob(tree, arg, MAX_FILES) {
                    squid_walk(tree, &f, depth + 1, inc, out, http_seen, problems);
                }
            }
            "http_port" | "https_port" => {
                *http_seen |= key == "http_port";
                match addr_port(arg) {
                    Some((addr, p)) => out.ports.push(Port::new(p, "tcp", addr, false, at())),
                    None => problems.push(Problem {
                        path: path.into(),
                        message: format!("line {}: bad {key} {arg:?}", i + 1),
                    }),
                }
            }
            "icp_port" | "htcp_port" | "snmp_port" => match arg.parse::<u16>() {
                Ok(0) => {}
                Ok(p) => out.ports.push(Port::new(p, "udp", None, false, at())),
                Err(_) => problems.push(Problem {
                    path: path.into(),
                    message: format!("line {}: bad {key} {arg:?}", i + 1),
                }),
            },
            _ => {}
        }
    }
    inc.close();
}

/// Squid (squid.conf(5)): `http_port`, `https_port` (tcp), `icp_port`, `htcp_port`, `snmp_port`
/// (udp, 0 = off), `include`. Without `http_port`, the default 3128/tcp.
pub fn squid(tree: &Tree, problems: &mut Vec<Problem>) -> ConfigPorts {
    let mut out = ConfigPorts::default();
    let Some(path) = first_existing(
        tree,
        &[
            "/etc/squid/squid.conf",
            "/etc/squid3/squid.conf",
            "/usr/local/squid/etc/squid.conf",
        ],
    ) else {
        out.ports.push(Port::new(
            3128,
            "tcp",
            None,
            true,
            Provenance::file(
                "/etc/squid/squid.conf",
                Some("absent; default http_port 3128".into()),
            ),
        ));
        return out;
    };
    let mut inc = Includes::new();
    let mut http_seen = false;
    squid_walk(tree, &path, 0, &mut inc, &mut out, &mut http_seen, problems);
    if !http_seen {
        out.ports.push(Port::new(
            3128,
            "tcp",
            None,
            true,
            Provenance::file(&path, Some("default http_port 3128".into())),
        ));
    }
    out.notes.push("squid 2.x opens icp_port 3130/udp and htcp_port 4827/udp by default when they are not set; squid 3.1+ does not".into());
    out.files = inc.files;
    out
}

// ---------------------------------------------------------------- MySQL / MariaDB

#[derive(Default)]
struct MyCnf {
    port: Option<(u16, Provenance)>,
    bind: Option<(String, Provenance)>,
    skip_networking: Option<(bool, Provenance)>,
}

fn mysql_section_applies(s: &str) -> bool {
    let s = s.trim().to_ascii_lowercase();
    s == "mysqld"
        || s == "server"
        || s == "mariadb"
        || s == "mariadbd"
        || s.starts_with("mysqld-")
        || s.starts_with("mariadb-")
}

fn mysql_walk(
    tree: &Tree,
    path: &str,
    depth: usize,
    inc: &mut Includes,
    cnf: &mut MyCnf,
    problems: &mut Vec<Problem>,
) {
    let Some(text) = inc.open(tree, path, depth, problems) else {
        return;
    };
    let mut in_section = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(f) = line.strip_prefix("!includedir") {
            let dir = f.trim();
            for name in util::list_dir(tree, dir) {
                if name.ends_with(".cnf") {
                    mysql_walk(tree, &util::join(dir, &name), depth + 1, inc, cnf, problems);
                }
            }
            continue;
        }
        if let Some(f) = line.strip_prefix("!include") {
            mysql_walk(tree, f.trim(), depth + 1, inc, cnf, problems);
            continue;
        }
        if let Some(sec) = line.strip_prefix('[') {
            in_section = mysql_section_applies(sec.trim_end_matches(']'));
            continue;
        }
        if !in_section {
            continue;
        }
        let line = line.split('#').next().unwrap_or("").trim();
        let (k, v) = match line.split_once('=') {
            Some((k, v)) => (
                k.trim(),
                Some(v.trim().trim_matches('"').trim_matches('\'')),
            ),
            None => (line, None),
        };
        let k = k.replace('_', "-").to_ascii_lowercase();
        let k = k.strip_prefix("loose-").unwrap_or(&k).to_string();
        let at = Provenance::line(path, i + 1, raw);
        match (k.as_str(), v) {
            ("port", Some(v)) => match v.parse() {
                Ok(p) => cnf.port = Some((p, at)),
                Err(_) => problems.push(Problem {
                    path: path.into(),
                    message: format!("line {}: bad port {v:?}", i + 1),
                }),
            },
            ("bind-address", Some(v)) => cnf.bind = Some((v.to_string(), at)),
            ("skip-networking", v) => {
                let on = !matches!(
                    v.map(|s| s.to_ascii_lowercase()).as_deref(),
                    Some("0" | "off" | "false")
                );
                cnf.skip_networking = Some((on, at));
            }
            _ => {}
        }
    }
    inc.close();
}

/// MySQL / MariaDB option files: `[mysqld]`/`[server]`/`[mariadb]` `port` (default 3306),
/// `bind-address`, `skip-networking`; `!include` and `!includedir` (`*.cnf`). Later values win.
pub fn mysql(tree: &Tree, problems: &mut Vec<Problem>) -> ConfigPorts {
    let mut out = ConfigPorts::default();
    let mut cnf = MyCnf::default();
    let mut inc = Includes::new();
    for f in ["/etc/my.cnf", "/etc/mysql/my.cnf"] {
        if !inc.was_read(tree, f) {
            mysql_walk(tree, f, 0, &mut inc, &mut cnf, problems);
        }
    }
    out.files = inc.files.clone();
    let main = out
        .files
        .first()
        .cloned()
        .unwrap_or_else(|| "/etc/my.cnf".into());
    if let Some((true, at)) = &cnf.skip_networking {
        out.no_network = true;
        out.notes.push(format!(
            "skip-networking at {}:{}: no TCP port",
            at.file,
            at.line.unwrap_or(0)
        ));
        return out;
    }
    let addr = cnf.bind.as_ref().map(|(a, _)| a.clone());
    let (port, src, default) = match &cnf.port {
        Some((p, at)) => (*p, at.clone(), false),
        None => (
            3306,
            Provenance::file(&main, Some("default port 3306".into())),
            true,
        ),
    };
    if let Some((_, at)) = &cnf.bind {
        out.notes.push(format!(
            "bind-address set at {}:{}",
            at.file,
            at.line.unwrap_or(0)
        ));
    }
    out.ports.push(Port::new(port, "tcp", addr, default, src));
    out
}

// ---------------------------------------------------------------- Apache httpd

struct HttpdState {
    server_root: String,
    conditional: usize,
    port13: Option<(u16, Provenance)>,
    bind13: Option<String>,
}

fn unquote(s: &str) -> &str {
    s.trim().trim_matches('"').trim_matches('\'')
}

fn httpd_walk(
    tree: &Tree,
    path: &str,
    depth: usize,
    inc: &mut Includes,
    st: &mut HttpdState,
    out: &mut ConfigPorts,
    problems: &mut Vec<Problem>,
) {
    let Some(text) = inc.open(tree, path, depth, problems) else {
        return;
    };
    let mut pending = String::new();
    let mut start = 0usize;
    for (i, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            start = i + 1;
        }
        let t = raw.trim_end();
        if let Some(c) = t.strip_suffix('\\') {
            pending.push_str(c);
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        let full = std::mem::take(&mut pending);
        let line = full.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("<if") {
            st.conditional += 1;
            continue;
        }
        if lower.starts_with("</if") {
            st.conditional = st.conditional.saturating_sub(1);
            continue;
        }
        let mut it = line.split_whitespace();
        let key = it.next().unwrap_or("").to_ascii_lowercase();
        let args: Vec<&str> = it.collect();
        let at = Provenance::line(path, start, line);
        match key.as_str() {
            "serverroot" => st.server_root = unquote(args.first().unwrap_or(&"")).to_string(),
            "include" | "includeoptional" => {
                let pat = unquote(args.first().unwrap_or(&"")).to_string();
                let pat = if pat.starts_with('/') {
                    pat
                } else {
                    util::join(&st.server_root, &pat)
                };
                let mut files = util::glob(tree, &pat, MAX_FILES);
                if files.is_empty() && key == "include" && !pat.contains(['*', '?', '[']) {
                    problems.push(Problem {
                        path: path.into(),
                        message: format!("line {start}: Include {pat} not found"),
                    });
                }
                // A directory includes every file under it.
                let mut expanded = Vec::new();
                for f in files.drain(..) {
                    let names = util::list_dir(tree, &f);
                    if util::resolve(tree, &f).is_some_and(|id| tree.entries(id).is_some()) {
                        expanded.extend(names.into_iter().map(|n| util::join(&f, &n)));
                    } else {
                        expanded.push(f);
                    }
                }
                for f in expanded {
                    httpd_walk(tree, &f, depth + 1, inc, st, out, problems);
                }
            }
            "listen" => {
                let Some(arg) = args.first() else { continue };
                match addr_port(arg) {
                    Some((addr, p)) => {
                        out.ports.push(Port::new(p, "tcp", addr, false, at));
                        if st.conditional > 0 {
                            out.notes.push(format!("{path}:{start}: Listen {arg} is inside a conditional <If...> section"));
                        }
                    }
                    None => problems.push(Problem {
                        path: path.into(),
                        message: format!("line {start}: bad Listen {arg:?}"),
                    }),
                }
            }
            "port" => {
                if let Some(p) = args.first().and_then(|a| a.parse().ok()) {
                    st.port13 = Some((p, at));
                }
            }
            "bindaddress" => st.bind13 = args.first().map(|s| s.to_string()),
            _ => {}
        }
    }
    inc.close();
}

/// Apache httpd: `Listen [addr:]port`, `Include`/`IncludeOptional` (globs, directories,
/// relative to `ServerRoot`), Apache 1.3 `Port`/`BindAddress`. Listen inside `<IfModule>` and
/// `<IfDefine>` sections is counted and noted.
pub fn httpd(tree: &Tree, problems: &mut Vec<Problem>) -> ConfigPorts {
    let mut out = ConfigPorts::default();
    let candidates = [
        ("/etc/httpd/conf/httpd.conf", "/etc/httpd"),
        ("/etc/apache2/apache2.conf", "/etc/apache2"),
        ("/etc/apache2/httpd.conf", "/etc/apache2"),
        ("/usr/local/apache2/conf/httpd.conf", "/usr/local/apache2"),
    ];
    let Some((main, root)) = candidates.iter().find(|(p, _)| util::exists(tree, p)) else {
        out.notes.push("no httpd configuration found".into());
        return out;
    };
    let mut st = HttpdState {
        server_root: root.to_string(),
        conditional: 0,
        port13: None,
        bind13: None,
    };
    let mut inc = Includes::new();
    httpd_walk(tree, main, 0, &mut inc, &mut st, &mut out, problems);
    if out.ports.is_empty() {
        match st.port13 {
            Some((p, at)) => out
                .ports
                .push(Port::new(p, "tcp", st.bind13.clone(), false, at)),
            None => out
                .notes
                .push("no Listen directive: httpd 2.x refuses to start without one".into()),
        }
    }
    out.files = inc.files;
    out
}

// ---------------------------------------------------------------- vsftpd

/// vsftpd.conf(5): `listen`/`listen_ipv6` (standalone), `listen_port` (default 21),
/// `listen_address`/`listen_address6`.
pub fn vsftpd(tree: &Tree, problems: &mut Vec<Problem>) -> ConfigPorts {
    let mut out = ConfigPorts::default();
    let Some(path) = first_existing(tree, &["/etc/vsftpd/vsftpd.conf", "/etc/vsftpd.conf"]) else {
        out.notes.push("no vsftpd.conf found".into());
        return out;
    };
    let mut inc = Includes::new();
    let Some(text) = inc.open(tree, &path, 0, problems) else {
        return out;
    };
    let (mut listen, mut listen6, mut port, mut addr, mut addr6) = (None, None, None, None, None);
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let at = Provenance::line(&path, i + 1, raw);
        let yes = v.trim().eq_ignore_ascii_case("yes");
        match k.trim() {
            "listen" => listen = Some((yes, at)),
            "listen_ipv6" => listen6 = Some((yes, at)),
            "listen_port" => match v.trim().parse::<u16>() {
                Ok(p) => port = Some((p, at)),
                Err(_) => problems.push(Problem {
                    path: path.clone(),
                    message: format!("line {}: bad listen_port", i + 1),
                }),
            },
            "listen_address" => addr = Some(v.trim().to_string()),
            "listen_address6" => addr6 = Some(v.trim().to_string()),
            _ => {}
        }
    }
    inc.close();
    out.files = inc.files;
    let standalone =
        listen.as_ref().is_some_and(|(y, _)| *y) || listen6.as_ref().is_some_and(|(y, _)| *y);
    if !standalone {
        out.no_network = true;
        out.notes.push(
            "listen=NO and listen_ipv6=NO: vsftpd only serves when started from (x)inetd".into(),
        );
        return out;
    }
    let (p, src, d) = match port {
        Some((p, at)) => (p, at, false),
        None => (
            21,
            Provenance::file(&path, Some("default listen_port 21".into())),
            true,
        ),
    };
    let address = if listen6.as_ref().is_some_and(|(y, _)| *y) {
        addr6.or(Some("::".into()))
    } else {
        addr
    };
    out.ports.push(Port::new(p, "tcp", address, d, src));
    out
}

// ---------------------------------------------------------------- named

struct Tok {
    text: String,
    line: usize,
    file: usize,
}

/// Tokenise named.conf: strings, `{`, `}`, `;`, words; comments `//`, `#`, `/* */` removed.
fn named_tokens(text: &str, file: usize, out: &mut Vec<Tok>) {
    let b = text.as_bytes();
    let mut i = 0usize;
    let mut line = 1usize;
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'#' || (c == b'/' && b.get(i + 1) == Some(&b'/')) {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                if b[i] == b'\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 2;
        } else if c == b'"' {
            let start = i + 1;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\n' {
                    line += 1;
                }
                i += 1;
            }
            let s = text.get(start..i.min(b.len())).unwrap_or("").to_string();
            out.push(Tok {
                text: s,
                line,
                file,
            });
            i += 1;
        } else if c == b'{' || c == b'}' || c == b';' {
            out.push(Tok {
                text: (c as char).to_string(),
                line,
                file,
            });
            i += 1;
        } else {
            let start = i;
            while i < b.len()
                && !b[i].is_ascii_whitespace()
                && !matches!(b[i], b'{' | b'}' | b';' | b'"')
            {
                i += 1;
            }
            out.push(Tok {
                text: text.get(start..i).unwrap_or("").to_string(),
                line,
                file,
            });
        }
    }
}

fn named_load(
    tree: &Tree,
    path: &str,
    depth: usize,
    inc: &mut Includes,
    toks: &mut Vec<Tok>,
    files: &mut Vec<String>,
    problems: &mut Vec<Problem>,
) {
    let Some(text) = inc.open(tree, path, depth, problems) else {
        return;
    };
    let idx = files.len();
    files.push(path.to_string());
    let mut mine = Vec::new();
    named_tokens(&text, idx, &mut mine);
    let mut k = 0usize;
    while k < mine.len() {
        if mine[k].text == "include" {
            if let Some(f) = mine.get(k + 1) {
                let f = f.text.clone();
                named_load(tree, &f, depth + 1, inc, toks, files, problems);
            }
            k += 3;
            continue;
        }
        toks.push(std::mem::replace(
            &mut mine[k],
            Tok {
                text: String::new(),
                line: 0,
                file: 0,
            },
        ));
        k += 1;
    }
    inc.close();
}

/// named.conf(5): `listen-on [port N] { addresses; }`, `listen-on-v6 ...` (default 53 tcp+udp
/// on all interfaces), `include "file";`, `controls { inet ADDR [port N] ... }` (rndc, 953).
pub fn named(tree: &Tree, problems: &mut Vec<Problem>) -> ConfigPorts {
    let mut out = ConfigPorts::default();
    let Some(path) = first_existing(
        tree,
        &[
            "/etc/named.conf",
            "/etc/bind/named.conf",
            "/var/named/chroot/etc/named.conf",
        ],
    ) else {
        out.notes.push("no named.conf found".into());
        return out;
    };
    let mut inc = Includes::new();
    let mut toks = Vec::new();
    let mut files = Vec::new();
    named_load(tree, &path, 0, &mut inc, &mut toks, &mut files, problems);
    let at = |t: &Tok| {
        let f = files.get(t.file).cloned().unwrap_or_default();
        Provenance {
            file: f,
            line: Some(u32::try_from(t.line).unwrap_or(u32::MAX)),
            text: Some(t.text.clone()),
        }
    };
    let mut any_listen = false;
    let mut controls = false;
    let mut i = 0usize;
    while i < toks.len() {
        let t = &toks[i].text;
        if t == "listen-on" || t == "listen-on-v6" {
            any_listen = true;
            let v6 = t == "listen-on-v6";
            let src = at(&toks[i]);
            let mut port = 53u16;
            let mut j = i + 1;
            if toks.get(j).is_some_and(|t| t.text == "port") {
                port = toks
                    .get(j + 1)
                    .and_then(|t| t.text.parse().ok())
                    .unwrap_or(53);
                j += 2;
            }
            // Addresses inside the braces.
            let mut addrs = Vec::new();
            if toks.get(j).is_some_and(|t| t.text == "{") {
                j += 1;
                while let Some(t) = toks.get(j) {
                    if t.text == "}" {
                        break;
                    }
                    if t.text != ";" && t.text != "{" {
                        addrs.push(t.text.clone());
                    }
                    j += 1;
                }
            }
            if addrs.iter().any(|a| a == "none") {
                i = j;
                continue;
            }
            if addrs.is_empty() || addrs.iter().any(|a| a == "any") {
                addrs = vec![if v6 { "::".into() } else { "0.0.0.0".into() }];
            }
            for a in addrs {
                for proto in ["tcp", "udp"] {
                    out.ports.push(Port::new(
                        port,
                        proto,
                        Some(a.trim_start_matches('!').to_string()),
                        false,
                        src.clone(),
                    ));
                }
            }
            i = j;
            continue;
        }
        if t == "controls" {
            controls = true;
        }
        if t == "inet" && controls {
            let addr = toks.get(i + 1).map(|t| t.text.clone());
            let port = if toks.get(i + 2).is_some_and(|t| t.text == "port") {
                toks.get(i + 3)
                    .and_then(|t| t.text.parse().ok())
                    .unwrap_or(953)
            } else {
                953
            };
            out.ports.push(Port::new(
                port,
                "tcp",
                addr.filter(|a| a != "*"),
                false,
                at(&toks[i]),
            ));
        }
        i += 1;
    }
    if !any_listen {
        let src = Provenance::file(&path, Some("default listen-on port 53 { any; }".into()));
        out.ports
            .push(Port::new(53, "tcp", None, true, src.clone()));
        out.ports.push(Port::new(53, "udp", None, true, src));
    }
    if !controls {
        out.notes.push("no controls statement: named also listens for rndc on 127.0.0.1:953 when an rndc key exists".into());
    }
    out.files = inc.files;
    out
}

// ---------------------------------------------------------------- rpcbind / portmap

/// rpcbind / portmap: 111 on tcp and udp (no configuration file).
pub fn rpcbind(tree: &Tree) -> ConfigPorts {
    let d = [
        "/sbin/rpcbind",
        "/usr/sbin/rpcbind",
        "/sbin/portmap",
        "/usr/sbin/portmap",
    ]
    .iter()
    .find(|p| util::exists(tree, p))
    .copied()
    .unwrap_or("rpcbind");
    let src = Provenance::file(d, Some("built-in port 111".into()));
    let mut out = ConfigPorts::default();
    out.ports
        .push(Port::new(111, "tcp", None, true, src.clone()));
    out.ports.push(Port::new(111, "udp", None, true, src));
    out
}

// ---------------------------------------------------------------- xrootd

fn xrootd_walk(
    tree: &Tree,
    path: &str,
    depth: usize,
    inc: &mut Includes,
    found: &mut Option<(Option<u16>, Provenance)>,
    problems: &mut Vec<Problem>,
) {
    let Some(text) = inc.open(tree, path, depth, problems) else {
        return;
    };
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        let mut it = line.split_whitespace();
        match it.next() {
            Some("xrd.port") => {
                let v = it.next().unwrap_or("");
                let p = if v == "any" { None } else { v.parse().ok() };
                if found.is_none() {
                    *found = Some((p, Provenance::line(path, i + 1, raw)));
                }
            }
            Some("continue") => {
                let f = it.next().unwrap_or("");
                if util::resolve(tree, f).is_some_and(|id| tree.entries(id).is_some()) {
                    for n in util::list_dir(tree, f) {
                        if n.ends_with(".cfg") {
                            xrootd_walk(tree, &util::join(f, &n), depth + 1, inc, found, problems);
                        }
                    }
                } else {
                    xrootd_walk(tree, f, depth + 1, inc, found, problems);
                }
            }
            _ => {}
        }
    }
    inc.close();
}

/// xrootd: `xrd.port N|any` (first one wins), `continue` includes; default 1094/tcp. Templated
/// units read `/etc/xrootd/xrootd-INSTANCE.cfg`.
pub fn xrootd(tree: &Tree, instance: Option<&str>, problems: &mut Vec<Problem>) -> ConfigPorts {
    let mut out = ConfigPorts::default();
    let mut cands: Vec<String> = Vec::new();
    if let Some(i) = instance {
        cands.push(format!("/etc/xrootd/xrootd-{i}.cfg"));
    }
    cands.extend([
        "/etc/xrootd/xrootd-clustered.cfg".into(),
        "/etc/xrootd/xrootd-standalone.cfg".into(),
        "/etc/xrootd/xrootd.cfg".into(),
    ]);
    let path = cands.into_iter().find(|p| util::exists(tree, p));
    let mut found = None;
    let mut inc = Includes::new();
    if let Some(p) = &path {
        xrootd_walk(tree, p, 0, &mut inc, &mut found, problems);
    }
    out.files = inc.files;
    match found {
        Some((Some(p), at)) => out.ports.push(Port::new(p, "tcp", None, false, at)),
        Some((None, at)) => out.notes.push(format!(
            "{}:{}: xrd.port any: an ephemeral port",
            at.file,
            at.line.unwrap_or(0)
        )),
        None => {
            let f = path.unwrap_or_else(|| "/etc/xrootd".into());
            out.ports.push(Port::new(
                1094,
                "tcp",
                None,
                true,
                Provenance::file(f, Some("default xrd.port 1094".into())),
            ));
        }
    }
    out
}

// ---------------------------------------------------------------- Globus

/// Scan `paths` in order for the first line `port_of` recognises (tcp, with that line as
/// provenance); without one, `default` with the first file read (or `paths[0]`) as provenance.
/// The pattern of the single-port Grid daemons below.
fn first_port_or_default(
    tree: &Tree,
    problems: &mut Vec<Problem>,
    paths: &[&str],
    default: u16,
    port_of: impl Fn(&str) -> Option<u16>,
) -> ConfigPorts {
    let mut out = ConfigPorts::default();
    let mut inc = Includes::new();
    for &path in paths {
        let Some(text) = inc.open(tree, path, 0, problems) else {
            continue;
        };
        if out.ports.is_empty() {
            if let Some((i, raw, p)) = text
                .lines()
                .enumerate()
                .find_map(|(i, raw)| port_of(strip_comment(raw)).map(|p| (i, raw, p)))
            {
                out.ports.push(Port::new(
                    p,
                    "tcp",
                    None,
                    false,
                    Provenance::line(path, i + 1, raw),
                ));
            }
        }
        inc.close();
    }
    out.files = inc.files.clone();
    if out.ports.is_empty() {
        let f = inc
            .files
            .first()
            .cloned()
            .unwrap_or_else(|| paths.first().copied().unwrap_or_default().into());
        out.ports.push(Port::new(
            default,
            "tcp",
            None,
            true,
            Provenance::file(f, Some(format!("default port {default}"))),
        ));
    }
    out
}

/// globus-gatekeeper: `-port N` in /etc/globus-gatekeeper.conf (or
/// `GLOBUS_GATEKEEPER_PORT=` in /etc/sysconfig/globus-gatekeeper); default 2119/tcp.
pub fn gatekeeper(tree: &Tree, problems: &mut Vec<Problem>) -> ConfigPorts {
    first_port_or_default(
        tree,
        problems,
        &[
            "/etc/sysconfig/globus-gatekeeper",
            "/etc/globus-gatekeeper.conf",
            "/opt/globus/etc/globus-gatekeeper.conf",
        ],
        2119,
        |line| {
            line.strip_prefix("-port")
                .or_else(|| line.strip_prefix("GLOBUS_GATEKEEPER_PORT="))
                .or_else(|| line.strip_prefix("port"))
                .and_then(|v| v.trim().trim_matches('"').parse::<u16>().ok())
        },
    )
}

/// GridFTP server: `port N` in /etc/gridftp.conf (or /etc/globus-gridftp-server.conf); default 2811/tcp.
pub fn gridftp(tree: &Tree, problems: &mut Vec<Problem>) -> ConfigPorts {
    first_port_or_default(
        tree,
        problems,
        &[
            "/etc/gridftp.conf",
            "/etc/globus-gridftp-server.conf",
            "/etc/grid-security/gridftp.conf",
        ],
        2811,
        |line| {
            let mut it = line.split_whitespace();
            (it.next() == Some("port"))
                .then(|| it.next())
                .flatten()
                .and_then(|v| v.trim_matches('"').parse::<u16>().ok())
        },
    )
}
