//! The image's accounts: /etc/passwd, /etc/shadow, /etc/group, /etc/gshadow read and edited
//! together, and the `users` and `groups` steps.
//!
//! Formats: passwd(5), shadow(5), group(5), gshadow(5). Lines the builder does not touch are kept
//! byte for byte (comments, NIS `+` lines included). New ids are allocated as `useradd -r` /
//! `groupadd -r` do: the highest free id in the system range from /etc/login.defs
//! (`SYS_UID_MIN`..`SYS_UID_MAX`, or 101..`UID_MIN`-1 on old systems without them).

use rootfs::{Metadata, Tree};

use super::{ensure_dir, read_text, write_file, StepContext, StepError, StepReport, StepResult};
use crate::recipe::{GroupSpec, Principal, UserSpec};

/// One passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

/// One group entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Name.
    pub name: String,
    /// gid.
    pub gid: u32,
    /// Members.
    pub members: Vec<String>,
}

/// The four account files as lines.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    passwd: Vec<String>,
    shadow: Option<Vec<String>>,
    group: Vec<String>,
    gshadow: Option<Vec<String>>,
    login_defs: String,
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(|l| l.to_string()).collect()
}

fn join_lines(lines: &[String]) -> Vec<u8> {
    let mut s = String::new();
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s.into_bytes()
}

fn field_name(line: &str) -> &str {
    line.split(':').next().unwrap_or("")
}

fn parse_user(line: &str) -> Option<User> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 7 || f[0].is_empty() || f[0].starts_with('+') || f[0].starts_with('-') {
        return None;
    }
    Some(User {
        name: f[0].into(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: f[5].into(),
    })
}

fn parse_group(line: &str) -> Option<Group> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 4 || f[0].is_empty() || f[0].starts_with('+') || f[0].starts_with('-') {
        return None;
    }
    let members = f[3]
        .split(',')
        .filter(|m| !m.is_empty())
        .map(|m| m.to_string())
        .collect();
    Some(Group {
        name: f[0].into(),
        gid: f[2].parse().ok()?,
        members,
    })
}

impl Accounts {
    /// Read the account files from the tree (missing files are empty).
    pub fn load(tree: &Tree) -> StepResult<Accounts> {
        Ok(Accounts {
            passwd: read_text(tree, "/etc/passwd")?
                .map(|t| lines(&t))
                .unwrap_or_default(),
            shadow: read_text(tree, "/etc/shadow")?.map(|t| lines(&t)),
            group: read_text(tree, "/etc/group")?
                .map(|t| lines(&t))
                .unwrap_or_default(),
            gshadow: read_text(tree, "/etc/gshadow")?.map(|t| lines(&t)),
            login_defs: read_text(tree, "/etc/login.defs")?.unwrap_or_default(),
        })
    }

    /// All users.
    pub fn users(&self) -> impl Iterator<Item = User> + '_ {
        self.passwd.iter().filter_map(|l| parse_user(l))
    }

    /// All groups.
    pub fn groups(&self) -> impl Iterator<Item = Group> + '_ {
        self.group.iter().filter_map(|l| parse_group(l))
    }

    /// A user by name.
    pub fn user(&self, name: &str) -> Option<User> {
        self.users().find(|u| u.name == name)
    }

    /// A user by uid.
    pub fn user_by_uid(&self, uid: u32) -> Option<User> {
        self.users().find(|u| u.uid == uid)
    }

    /// A group by name.
    pub fn group(&self, name: &str) -> Option<Group> {
        self.groups().find(|g| g.name == name)
    }

    /// A group by gid.
    pub fn group_by_gid(&self, gid: u32) -> Option<Group> {
        self.groups().find(|g| g.gid == gid)
    }

    fn login_def(&self, key: &str) -> Option<u32> {
        self.login_defs.lines().find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(key))
                .then(|| it.next().and_then(|v| v.parse().ok()))
                .flatten()
        })
    }

    /// The system id range for users (`uid = true`) or groups.
    pub fn system_range(&self, uid: bool) -> (u32, u32) {
        let (pfx, min_key) = if uid {
            ("SYS_UID_", "UID_MIN")
        } else {
            ("SYS_GID_", "GID_MIN")
        };
        let min = self.login_def(&format!("{pfx}MIN")).unwrap_or(101);
        let max = self
            .login_def(&format!("{pfx}MAX"))
            .or_else(|| self.login_def(min_key).map(|m| m.saturating_sub(1)))
            .unwrap_or(999);
        (min.min(max), max)
    }

    /// The highest free id in the system range, also free in `also_free` (so a user and its
    /// group can share a number).
    fn allocate(&self, uid: bool, also_free: impl Fn(u32) -> bool) -> StepResult<u32> {
        let (min, max) = self.system_range(uid);
        let used: std::collections::BTreeSet<u32> = if uid {
            self.users().map(|u| u.uid).collect()
        } else {
            self.groups().map(|g| g.gid).collect()
        };
        (min..=max)
            .rev()
            .find(|i| !used.contains(i) && also_free(*i))
            .ok_or_else(|| {
                StepError::new(format!(
                    "no free {} in the system range {min}..={max}",
                    if uid { "uid" } else { "gid" }
                ))
            })
    }

    fn days(ctx: &StepContext) -> i64 {
        ctx.epoch.sec.div_euclid(86400)
    }

    /// Add a group or modify its gid/members.
    pub fn put_group(&mut self, ctx: &StepContext, spec: &GroupSpec) -> StepResult<(u32, bool)> {
        if let Some(gid) = spec.gid {
            if let Some(other) = self.group_by_gid(gid) {
                if other.name != spec.name {
                    return Err(StepError::new(format!(
                        "group '{}': gid {gid} is already used by group '{}'",
                        spec.name, other.name
                    )));
                }
            }
        }
        let existing = self.group(&spec.name);
        let gid = match (&existing, spec.gid) {
            (_, Some(g)) => g,
            (Some(g), None) => g.gid,
            (None, None) => self.allocate(false, |_| true)?,
        };
        let mut members = existing
            .as_ref()
            .map(|g| g.members.clone())
            .unwrap_or_default();
        for m in &spec.members {
            if !members.contains(m) {
                members.push(m.clone());
            }
        }
        let line = format!("{}:x:{}:{}", spec.name, gid, members.join(","));
        let gline = format!("{}:!::{}", spec.name, members.join(","));
        let added = existing.is_none();
        set_line(&mut self.group, &spec.name, line, |old, new| {
            // keep the password field of an existing line
            let p = old.split(':').nth(1).unwrap_or("x");
            let mut f: Vec<&str> = new.split(':').collect();
            if f.len() > 1 {
                f[1] = p;
            }
            f.join(":")
        });
        if let Some(gs) = self.gshadow.as_mut() {
            set_line(gs, &spec.name, gline, |old, new| {
                let of: Vec<&str> = old.split(':').collect();
                let nf: Vec<&str> = new.split(':').collect();
                format!(
                    "{}:{}:{}:{}",
                    nf.first().copied().unwrap_or(""),
                    of.get(1).copied().unwrap_or("!"),
                    of.get(2).copied().unwrap_or(""),
                    nf.get(3).copied().unwrap_or("")
                )
            });
        }
        let _ = ctx;
        Ok((gid, added))
    }

    /// Add or modify a user (creating its group when needed). Returns (uid, gid, added).
    pub fn put_user(&mut self, ctx: &StepContext, spec: &UserSpec) -> StepResult<(u32, u32, bool)> {
        let existing_line = self
            .passwd
            .iter()
            .find(|l| field_name(l) == spec.name)
            .cloned();
        if let Some(uid) = spec.uid {
            if let Some(other) = self.user_by_uid(uid) {
                if other.name != spec.name {
                    return Err(StepError::new(format!(
                        "user '{}': uid {uid} is already used by user '{}'",
                        spec.name, other.name
                    )));
                }
            }
        }
        let old: Vec<String> = existing_line
            .as_deref()
            .map(|l| l.split(':').map(|s| s.to_string()).collect())
            .unwrap_or_default();
        let old_uid = old.get(2).and_then(|s| s.parse::<u32>().ok());
        let uid = match (spec.uid, old_uid) {
            (Some(u), _) => u,
            (None, Some(u)) => u,
            (None, None) => {
                // Prefer a uid whose number is also free as a gid when the group is ours to create.
                let wants_group = spec.group.is_none() && self.group(&spec.name).is_none();
                let me = self.clone();
                self.allocate(true, |i| !wants_group || me.group_by_gid(i).is_none())
                    .or_else(|_| self.allocate(true, |_| true))?
            }
        };
        let gid = match &spec.group {
            Some(Principal::Id(g)) => *g,
            Some(Principal::Name(n)) => {
                self.group(n)
                    .ok_or_else(|| {
                        StepError::new(format!("user '{}': unknown group '{n}'", spec.name))
                    })?
                    .gid
            }
            None => match (
                old.get(3).and_then(|s| s.parse::<u32>().ok()),
                self.group(&spec.name),
            ) {
                (Some(g), _) if existing_line.is_some() => g,
                (_, Some(g)) => g.gid,
                _ => {
                    let want = if self.group_by_gid(uid).is_none() {
                        Some(uid)
                    } else {
                        None
                    };
                    self.put_group(
                        ctx,
                        &GroupSpec {
                            name: spec.name.clone(),
                            gid: want,
                            members: vec![],
                        },
                    )?
                    .0
                }
            },
        };
        for g in &spec.groups {
            let grp = self.group(g).ok_or_else(|| {
                StepError::new(format!("user '{}': unknown group '{g}'", spec.name))
            })?;
            self.put_group(
                ctx,
                &GroupSpec {
                    name: grp.name,
                    gid: Some(grp.gid),
                    members: vec![spec.name.clone()],
                },
            )?;
        }
        let pick = |given: &Option<String>, idx: usize, default: String| -> String {
            given
                .clone()
                .or_else(|| old.get(idx).cloned())
                .unwrap_or(default)
        };
        let comment = pick(&spec.comment, 4, String::new());
        let home = pick(
            &spec.home,
            5,
            if uid >= 1000 {
                format!("/home/{}", spec.name)
            } else {
                "/".to_string()
            },
        );
        let shell = pick(&spec.shell, 6, "/sbin/nologin".to_string());
        let pwfield = old.get(1).cloned().unwrap_or_else(|| {
            if self.shadow.is_some() {
                "x".into()
            } else {
                "!!".into()
            }
        });
        let line = format!(
            "{}:{}:{}:{}:{}:{}:{}",
            spec.name, pwfield, uid, gid, comment, home, shell
        );
        let added = existing_line.is_none();
        set_line(&mut self.passwd, &spec.name, line, |_, new| new.to_string());
        let days = Self::days(ctx);
        if let Some(sh) = self.shadow.as_mut() {
            let exists = sh.iter().any(|l| field_name(l) == spec.name);
            if !exists {
                let pw = spec.password.clone().unwrap_or_else(|| "!!".into());
                sh.push(format!("{}:{}:{}::::::", spec.name, pw, days));
            } else if let Some(pw) = &spec.password {
                for l in sh.iter_mut() {
                    if field_name(l) == spec.name {
                        let mut f: Vec<String> = l.split(':').map(|s| s.to_string()).collect();
                        while f.len() < 9 {
                            f.push(String::new());
                        }
                        f[1] = pw.clone();
                        f[2] = days.to_string();
                        *l = f.join(":");
                    }
                }
            }
        } else if let Some(pw) = &spec.password {
            // No shadow file: the hash lives in passwd.
            for l in self.passwd.iter_mut() {
                if field_name(l) == spec.name {
                    let mut f: Vec<String> = l.split(':').map(|s| s.to_string()).collect();
                    if f.len() > 1 {
                        f[1] = pw.clone();
                    }
                    *l = f.join(":");
                }
            }
        }
        Ok((uid, gid, added))
    }

    /// Write the four files back (only those that exist, plus passwd/group), keeping each
    /// existing file's owner and mode. Returns the paths written.
    pub fn store(
        &self,
        tree: &mut Tree,
        ctx: &StepContext,
        before: &Accounts,
    ) -> StepResult<Vec<String>> {
        let mut changed = Vec::new();
        let files: [(&str, Option<&Vec<String>>, Option<&Vec<String>>, u16); 4] = [
            (
                "/etc/passwd",
                Some(&self.passwd),
                Some(&before.passwd),
                0o644,
            ),
            (
                "/etc/shadow",
                self.shadow.as_ref(),
                before.shadow.as_ref(),
                0o000,
            ),
            ("/etc/group", Some(&self.group), Some(&before.group), 0o644),
            (
                "/etc/gshadow",
                self.gshadow.as_ref(),
                before.gshadow.as_ref(),
                0o000,
            ),
        ];
        for (path, now, was, perm) in files {
            if let Some(now) = now {
                if Some(now) != was {
                    write_file(
                        tree,
                        ctx,
                        path,
                        join_lines(now),
                        Metadata::new(perm, 0, 0, ctx.epoch),
                    )?;
                    changed.push(path.to_string());
                }
            }
        }
        Ok(changed)
    }
}

/// Replace the line whose first field is `name` (merging with `merge(old, new)`), or append `new`.
fn set_line(
    lines: &mut Vec<String>,
    name: &str,
    new: String,
    merge: impl Fn(&str, &str) -> String,
) {
    for l in lines.iter_mut() {
        if field_name(l) == name {
            *l = merge(l, &new);
            return;
        }
    }
    lines.push(new);
}

/// `groups` step.
pub fn groups(
    tree: &mut Tree,
    ctx: &StepContext,
    specs: &[GroupSpec],
    r: &mut StepReport,
) -> StepResult {
    let before = Accounts::load(tree)?;
    let mut acc = before.clone();
    for g in specs {
        for m in &g.members {
            if acc.user(m).is_none() {
                return Err(StepError::new(format!(
                    "group '{}': unknown member user '{m}'",
                    g.name
                )));
            }
        }
        let (gid, added) = acc.put_group(ctx, g)?;
        r.notes.push(format!(
            "group {} gid {gid} {}",
            g.name,
            if added { "added" } else { "updated" }
        ));
    }
    r.changed.extend(acc.store(tree, ctx, &before)?);
    Ok(())
}

/// `users` step.
pub fn users(
    tree: &mut Tree,
    ctx: &StepContext,
    specs: &[UserSpec],
    r: &mut StepReport,
) -> StepResult {
    let before = Accounts::load(tree)?;
    if before.passwd.is_empty() {
        return Err(StepError::new("the image has no /etc/passwd"));
    }
    let mut acc = before.clone();
    let mut homes = Vec::new();
    for u in specs {
        let (uid, gid, added) = acc.put_user(ctx, u)?;
        r.notes.push(format!(
            "user {} uid {uid} gid {gid} {}",
            u.name,
            if added { "added" } else { "updated" }
        ));
        if u.create_home {
            if let Some(user) = acc.user(&u.name) {
                homes.push((user.home, uid, gid));
            }
        }
    }
    r.changed.extend(acc.store(tree, ctx, &before)?);
    for (home, uid, gid) in homes {
        if home == "/" || !home.starts_with('/') {
            continue;
        }
        let (id, created) =
            ensure_dir(tree, ctx, &home, Metadata::new(0o700, uid, gid, ctx.epoch))?;
        if created {
            r.added.push(home.clone());
        } else {
            let m = &mut tree.node_mut(id).meta;
            m.uid = uid;
            m.gid = gid;
        }
    }
    Ok(())
}
