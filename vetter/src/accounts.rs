//! Accounts and access: /etc/passwd, /etc/shadow, /etc/group, sudoers, ssh host keys,
//! authorized_keys and sshd's root/password login settings.

use std::collections::{BTreeMap, HashMap};

use rootfs::Tree;
use serde::Serialize;

use crate::services::sshd;
use crate::system::System;
use crate::util::{self, read_text};
use crate::{Problem, Provenance};

/// Names of the image's uids and gids.
#[derive(Clone, Debug, Default)]
pub struct Ids {
    /// uid -> first user name.
    pub users: HashMap<u32, String>,
    /// gid -> first group name.
    pub groups: HashMap<u32, String>,
    /// Whether /etc/passwd exists.
    pub have_passwd: bool,
    /// Whether /etc/group exists.
    pub have_group: bool,
}

/// Read uid and gid names from the image.
pub fn read_ids(tree: &Tree) -> Ids {
    let mut ids = Ids::default();
    if let Some(t) = read_text(tree, "/etc/passwd") {
        ids.have_passwd = true;
        for e in parse_passwd(&t) {
            ids.users.entry(e.uid).or_insert(e.name);
        }
    }
    if let Some(t) = read_text(tree, "/etc/group") {
        ids.have_group = true;
        for l in t.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if let (Some(n), Some(g)) = (
                f.first(),
                f.get(2).and_then(|g| g.trim().parse::<u32>().ok()),
            ) {
                ids.groups.entry(g).or_insert_with(|| n.to_string());
            }
        }
    }
    ids
}

/// One /etc/passwd line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
    /// The shell allows logging in (not nologin/false/sync/shutdown/halt).
    pub login_shell: bool,
    /// Password state: `locked`, `hash`, `empty`, `missing` (no shadow entry), `unknown`.
    pub password: String,
    /// uid below the distribution's first user uid.
    pub system: bool,
    /// 1-based line in /etc/passwd.
    pub line: u32,
    /// 1-based line of its entry in /etc/shadow, when its password state was read there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_line: Option<u32>,
}

/// One sudoers rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SudoRule {
    /// Where it is.
    pub at: Provenance,
}

/// An authorized_keys file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuthorizedKeys {
    /// Path.
    pub path: String,
    /// The account whose home holds it.
    pub user: String,
    /// Number of keys.
    pub keys: usize,
    /// Key types (`ssh-rsa`, `ssh-ed25519`, ...), in file order.
    pub types: Vec<String>,
}

/// The accounts section.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Accounts {
    /// First uid of regular users (UID_MIN of /etc/login.defs, else 500 for old Red Hat, 1000 otherwise).
    pub uid_min: u32,
    /// All accounts of /etc/passwd.
    pub users: Vec<Account>,
    /// Names of accounts with uid 0.
    pub uid0: Vec<String>,
    /// Accounts whose password is empty (can log in without one).
    pub empty_password: Vec<String>,
    /// Accounts marked as shadowed (`x`) without a shadow entry.
    pub missing_shadow: Vec<String>,
    /// System accounts (uid < uid_min, not root) with a login shell.
    pub system_with_shell: Vec<String>,
    /// uids used by more than one account.
    pub duplicate_uids: BTreeMap<u32, Vec<String>>,
    /// Names defined more than once.
    pub duplicate_names: Vec<String>,
    /// Groups with gid 0 members or `wheel`/`sudo`/`admin` members: group -> members.
    pub admin_groups: BTreeMap<String, Vec<String>>,
    /// sudoers rules (comments and Defaults skipped).
    pub sudoers: Vec<SudoRule>,
    /// ssh host private keys present (should be purged before shipping).
    pub ssh_host_keys: Vec<String>,
    /// authorized_keys files.
    pub authorized_keys: Vec<AuthorizedKeys>,
    /// sshd PermitRootLogin as configured (absent = the daemon's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permit_root_login: Option<sshd::Setting>,
    /// sshd PasswordAuthentication as configured (absent = the default, yes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_authentication: Option<sshd::Setting>,
}

struct PwLine {
    name: String,
    passwd: String,
    uid: u32,
    gid: u32,
    home: String,
    shell: String,
    line: usize,
}

fn parse_passwd(text: &str) -> Vec<PwLine> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim_end_matches('\r');
        if l.is_empty() || l.starts_with('#') || l.starts_with('+') || l.starts_with('-') {
            continue;
        }
        let f: Vec<&str> = l.split(':').collect();
        let (Some(uid), Some(gid)) = (
            f.get(2).and_then(|v| v.parse().ok()),
            f.get(3).and_then(|v| v.parse().ok()),
        ) else {
            continue;
        };
        out.push(PwLine {
            name: f.first().unwrap_or(&"").to_string(),
            passwd: f.get(1).unwrap_or(&"").to_string(),
            uid,
            gid,
            home: f.get(5).unwrap_or(&"").to_string(),
            shell: f.get(6).unwrap_or(&"").to_string(),
            line: i + 1,
        });
    }
    out
}

fn is_login_shell(shell: &str) -> bool {
    let name = shell.rsplit('/').next().unwrap_or("");
    !matches!(
        name,
        "nologin" | "false" | "sync" | "shutdown" | "halt" | "true"
    )
}

fn password_state(field: &str) -> &'static str {
    if field.is_empty() {
        "empty"
    } else if field.starts_with('!') || field.starts_with('*') || field == "x" || field == "LK" {
        "locked"
    } else {
        "hash"
    }
}

fn uid_min(tree: &Tree, system: &System) -> u32 {
    if let Some(t) = read_text(tree, "/etc/login.defs") {
        for l in t.lines() {
            let mut it = l.split_whitespace();
            if it.next() == Some("UID_MIN") {
                if let Some(v) = it.next().and_then(|v| v.parse().ok()) {
                    return v;
                }
            }
        }
    }
    if system.family.as_deref() == Some("redhat") && system.major_release.is_some_and(|m| m < 7) {
        500
    } else {
        1000
    }
}

/// Gather the accounts section.
pub fn inspect(tree: &Tree, system: &System, problems: &mut Vec<Problem>) -> Accounts {
    let mut a = Accounts {
        uid_min: uid_min(tree, system),
        ..Default::default()
    };
    // name -> (password field, 1-based line); the first entry of a name wins, as for login.
    let mut shadow: HashMap<String, (String, u32)> = HashMap::new();
    if let Some(t) = read_text(tree, "/etc/shadow") {
        for (i, l) in t.lines().enumerate() {
            let mut f = l.split(':');
            if let (Some(n), Some(pw)) = (f.next(), f.next()) {
                let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
                shadow
                    .entry(n.to_string())
                    .or_insert_with(|| (pw.to_string(), line));
            }
        }
    }
    let have_shadow = util::exists(tree, "/etc/shadow");
    let pw = read_text(tree, "/etc/passwd")
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut uids: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for p in &pw {
        let shadow_line = (p.passwd == "x")
            .then(|| shadow.get(&p.name).map(|(_, l)| *l))
            .flatten();
        let password = if p.passwd == "x" {
            match shadow.get(&p.name) {
                Some((s, _)) => password_state(s),
                None if have_shadow => "missing",
                None => "unknown",
            }
        } else {
            password_state(&p.passwd)
        };
        let login_shell = is_login_shell(&p.shell);
        let system_acct = p.uid < a.uid_min;
        if p.uid == 0 {
            a.uid0.push(p.name.clone());
        }
        if password == "empty" {
            a.empty_password.push(p.name.clone());
        }
        if password == "missing" {
            a.missing_shadow.push(p.name.clone());
        }
        if system_acct && p.uid != 0 && login_shell {
            a.system_with_shell.push(p.name.clone());
        }
        *names.entry(p.name.clone()).or_default() += 1;
        uids.entry(p.uid).or_default().push(p.name.clone());
        a.users.push(Account {
            name: p.name.clone(),
            uid: p.uid,
            gid: p.gid,
            home: p.home.clone(),
            shell: p.shell.clone(),
            login_shell,
            password: password.to_string(),
            system: system_acct,
            line: u32::try_from(p.line).unwrap_or(u32::MAX),
            shadow_line,
        });
    }
    a.duplicate_names = names
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, _)| k)
        .collect();
    a.duplicate_uids = uids.into_iter().filter(|(_, v)| v.len() > 1).collect();
    if let Some(t) = read_text(tree, "/etc/group") {
        for l in t.lines() {
            let f: Vec<&str> = l.split(':').collect();
            let (Some(name), Some(gid)) = (f.first(), f.get(2)) else {
                continue;
            };
            let members: Vec<String> = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|s| !s.trim().is_empty())
                        .map(|s| s.trim().to_string())
                        .collect()
                })
                .unwrap_or_default();
            if (*gid == "0" || matches!(*name, "wheel" | "sudo" | "admin")) && !members.is_empty() {
                a.admin_groups.insert(name.to_string(), members);
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    sudoers(tree, "/etc/sudoers", 0, &mut seen, &mut a.sudoers, problems);
    a.ssh_host_keys = util::list_dir(tree, "/etc/ssh")
        .into_iter()
        .filter(|n| n.starts_with("ssh_host_") && n.ends_with("_key"))
        .map(|n| format!("/etc/ssh/{n}"))
        .collect();
    let mut homes: Vec<(String, String)> = pw
        .iter()
        .map(|p| (p.name.clone(), p.home.clone()))
        .collect();
    if !homes.iter().any(|(n, _)| n == "root") {
        homes.push(("root".into(), "/root".into()));
    }
    let mut seen_paths = std::collections::HashSet::new();
    for (user, home) in homes {
        if home.is_empty() || home == "/" && user != "root" {
            continue;
        }
        for f in ["authorized_keys", "authorized_keys2"] {
            let path = util::join(&util::join(&home, ".ssh"), f);
            if !seen_paths.insert(path.clone()) {
                continue;
            }
            if let Some(t) = read_text(tree, &path) {
                let types: Vec<String> = t
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .filter_map(|l| {
                        l.split_whitespace().find(|w| {
                            w.starts_with("ssh-") || w.starts_with("ecdsa-") || w.starts_with("sk-")
                        })
                    })
                    .map(str::to_string)
                    .collect();
                a.authorized_keys.push(AuthorizedKeys {
                    path,
                    user: user.clone(),
                    keys: types.len(),
                    types,
                });
            }
        }
    }
    let cfg = sshd::parse(tree, "/etc/ssh/sshd_config", problems);
    a.permit_root_login = cfg.permit_root_login;
    a.password_authentication = cfg.password_authentication;
    a
}

const MAX_SUDO_DEPTH: usize = 8;

fn sudoers(
    tree: &Tree,
    path: &str,
    depth: usize,
    seen: &mut std::collections::HashSet<rootfs::NodeId>,
    out: &mut Vec<SudoRule>,
    problems: &mut Vec<Problem>,
) {
    if depth > MAX_SUDO_DEPTH {
        problems.push(Problem {
            path: path.into(),
            message: "sudoers include chain too deep".into(),
        });
        return;
    }
    let Some(id) = util::resolve(tree, path) else {
        return;
    };
    if !seen.insert(id) {
        return;
    }
    let Some(text) = read_text(tree, path) else {
        return;
    };
    let mut pending = String::new();
    let mut start = 0usize;
    for (i, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            start = i + 1;
        }
        let l = raw.trim_end();
        if let Some(cont) = l.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(l);
        let line = std::mem::take(&mut pending);
        let t = line.trim();
        let inc = t
            .strip_prefix("#includedir")
            .or_else(|| t.strip_prefix("@includedir"));
        if let Some(dir) = inc {
            let dir = dir.trim();
            for name in util::list_dir(tree, dir) {
                // sudo skips names ending in '~' or containing '.'.
                if name.ends_with('~') || name.contains('.') {
                    continue;
                }
                sudoers(
                    tree,
                    &util::join(dir, &name),
                    depth + 1,
                    seen,
                    out,
                    problems,
                );
            }
            continue;
        }
        let inc = t
            .strip_prefix("#include")
            .or_else(|| t.strip_prefix("@include"));
        if let Some(f) = inc.filter(|r| r.starts_with(char::is_whitespace)) {
            let f = f.trim();
            let f = if f.starts_with('/') {
                f.to_string()
            } else {
                util::join("/etc", f)
            };
            sudoers(tree, &f, depth + 1, seen, out, problems);
            continue;
        }
        if t.is_empty() || t.starts_with('#') || t.starts_with("Defaults") {
            continue;
        }
        if [
            "User_Alias",
            "Runas_Alias",
            "Host_Alias",
            "Cmnd_Alias",
            "Cmd_Alias",
        ]
        .iter()
        .any(|a| t.starts_with(a))
        {
            continue;
        }
        out.push(SudoRule {
            at: Provenance::line(path, start, t),
        });
    }
}
