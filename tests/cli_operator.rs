//! Issue 15, the operator's first hour: exit statuses (usage errors 2 for every command, the
//! table in `--help` and docs/exit-codes.md), read-only `ps`/`slots`, site paths reached through
//! `..`, `deploy` without `xl`, unknown names listed, no colour codes in logs written to a file.
//! The fixture is the demo itself (`wafer demo DIR`): a site with one dry-run deployment.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const WAFER: &str = env!("CARGO_BIN_EXE_wafer");

/// `PATH` without any folder holding an `xl`: this host then has no hypervisor tool.
fn path_without_xl() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|d| !d.join("xl").exists())
        .collect();
    std::env::join_paths(dirs)
        .expect("PATH")
        .to_string_lossy()
        .into_owned()
}

/// `wafer ARGS` in `cwd`, on a host without `xl`.
fn wafer_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(WAFER)
        .args(args)
        .current_dir(cwd)
        .env("PATH", path_without_xl())
        .env_remove("WAFER_PASSPHRASE")
        .output()
        .expect("run wafer")
}

/// The demo's folder, made in `tmp`: its site holds one dry-run deployment in slot edge1, and
/// gets a second, free slot edge2.
fn demo(tmp: &Path) -> PathBuf {
    let dir = tmp.join("wafer-demo");
    ok(wafer_in(tmp, &["demo", s(&dir)]));
    let site = dir.join("site/site.toml");
    let mut text = std::fs::read_to_string(&site).unwrap();
    text.push_str(
        "\n[[slot]]\nname = \"edge2\"\nmemory_mib = 1024\nvcpus = 1\ndisk_mib = 2048\n\
         arch = \"x86_64\"\nvos = [\"cms\"]\nnetworks = [\"public\"]\n",
    );
    std::fs::write(&site, text).unwrap();
    dir
}

/// Every path below `dir` with its size and modification time.
fn state_snapshot(dir: &Path) -> Vec<(PathBuf, u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    snapshot(dir)
        .into_iter()
        .map(|(p, n)| {
            let m = std::fs::symlink_metadata(&p)
                .expect("metadata")
                .mtime_nsec();
            (p, n, m)
        })
        .collect()
}

const SUBCOMMANDS: [&str; 17] = [
    "mkfs",
    "ls",
    "build",
    "key",
    "inspect",
    "vet",
    "diff",
    "approve",
    "verify",
    "deploy",
    "slots",
    "ps",
    "stop",
    "recover",
    "completions",
    "man",
    "demo",
];

#[test]
fn usage_errors_exit_2_for_every_command_and_the_table_is_in_help_and_docs() {
    for sub in SUBCOMMANDS {
        let o = wafer(&[sub, "--no-such-option"]);
        assert_eq!(o.status.code(), Some(2), "wafer {sub}: {}", stderr(&o));
        assert!(stderr(&o).contains("--no-such-option"), "{}", stderr(&o));
    }
    for args in [
        &["no-such-command"][..],
        &["vet", "x", "--policy", "p.toml", "--fail-on", "bogus"],
        &["ls", "x", "--max-spool", "12Q"],
        &["vet"],
        &["key", "generate"],
    ] {
        let o = wafer(args);
        assert_eq!(o.status.code(), Some(2), "wafer {args:?}: {}", stderr(&o));
    }
    // a usage error of vet is never its "fails the policy" (1)
    assert_ne!(wafer(&["vet", "--polcy", "x"]).status.code(), Some(1));

    // the table: the same lines in `wafer --help` and in docs/exit-codes.md
    let help = stdout(&ok(wafer(&["--help"])));
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/exit-codes.md"))
        .expect("docs/exit-codes.md");
    let block: Vec<&str> = doc
        .split("```text\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a ```text block in docs/exit-codes.md")
        .lines()
        .collect();
    assert!(block.len() >= 6, "{block:?}");
    for line in &block {
        assert!(help.contains(line), "--help lacks {line:?}:\n{help}");
    }
    for code in ["  0 ", "  1 ", "  2 ", "  141 "] {
        assert!(help.contains(code), "{help}");
    }
}

#[test]
fn ps_and_slots_create_nothing_and_need_no_write_access() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = demo(tmp.path());
    let site = dir.join("site/site.toml");

    // a site whose state folder does not exist yet: empty, and still absent afterwards
    let fresh = tmp.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let text = std::fs::read_to_string(&site).unwrap();
    std::fs::write(fresh.join("site.toml"), &text).unwrap();
    for args in [
        &["ps", "--site", "site.toml"][..],
        &["ps", "--site", "site.toml", "--json"],
        &["slots", "--site", "site.toml"],
        &["slots", "--site", "site.toml", "--json"],
    ] {
        let o = ok(wafer_in(&fresh, args));
        assert!(!stdout(&o).contains("cms-demo"), "{}", stdout(&o));
    }
    assert!(
        stdout(&ok(wafer_in(&fresh, &["ps", "--site", "site.toml"]))).contains("no deployments")
    );
    assert!(
        !fresh.join("state").exists(),
        "ps/slots created the state folder"
    );
    assert!(!fresh.join("storage").exists());

    // the demo's state, read-only (and, as root, read by an unprivileged user): same answers,
    // nothing changed
    let state = dir.join("site/state");
    let before = state_snapshot(&state);
    let as_root = unsafe { libc::geteuid() } == 0;
    let mut dirs = vec![tmp.path().to_path_buf()];
    dirs.extend(
        snapshot(tmp.path())
            .into_iter()
            .filter(|(p, _)| p.is_dir())
            .map(|(p, _)| p),
    );
    for d in &dirs {
        // readable and searchable by all; the state folders nobody may write
        let mode = if d.starts_with(&state) { 0o555 } else { 0o755 };
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    for (p, _) in snapshot(&state) {
        if p.is_file() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)).unwrap();
        }
    }
    let read_only = |args: &[&str]| -> Output {
        let mut c = Command::new(WAFER);
        c.args(args)
            .current_dir(&dir)
            .env("PATH", path_without_xl());
        if as_root {
            // root writes anywhere: run as nobody, to whom the state folder is read-only
            unsafe {
                c.pre_exec(|| {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(65534) != 0
                        || libc::setuid(65534) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        c.output().expect("run wafer")
    };
    let ps = ok(read_only(&["ps", "--site", "site/site.toml"]));
    assert!(
        stdout(&ps).contains("cms-demo-frontier-squid"),
        "{}",
        stdout(&ps)
    );
    let ps = ok(read_only(&["ps", "--site", "site/site.toml", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(v["deployments"][0]["name"], "cms-demo-frontier-squid");
    let slots = ok(read_only(&["slots", "--site", "site/site.toml"]));
    assert!(
        stdout(&slots).contains("cms-demo-frontier-squid"),
        "{}",
        stdout(&slots)
    );
    // the permissions really do keep that user out: a deploy (which writes) is refused
    let o = read_only(&[
        "deploy",
        "wafers/squid-fixed",
        "--site",
        "site/site.toml",
        "--dry-run",
        "--name",
        "second",
    ]);
    assert!(
        !o.status.success(),
        "a deploy wrote to a read-only state folder"
    );
    assert_eq!(state_snapshot(&state), before, "the state folder changed");
    for d in &dirs {
        let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755));
    }
}

#[test]
fn site_paths_resolve_through_dotdot_in_site() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = demo(tmp.path());
    let recipe = dir.join("recipe");
    let site = "../site/site.toml";
    let o = ok(wafer_in(&recipe, &["ps", "--site", site]));
    assert!(
        stdout(&o).contains("cms-demo-frontier-squid"),
        "{}",
        stdout(&o)
    );
    let o = ok(wafer_in(&recipe, &["slots", "--site", site]));
    assert!(stdout(&o).contains("edge1"), "{}", stdout(&o));
    let o = ok(wafer_in(
        &recipe,
        &[
            "deploy",
            "../wafers/squid-fixed",
            "--site",
            site,
            "--dry-run",
            "--name",
            "via-dotdot",
            "--slot",
            "edge2",
        ],
    ));
    assert!(stdout(&o).contains("via-dotdot"), "{}", stdout(&o));
    // written where the site file's folder says, not relative to the working folder
    assert!(dir.join("site/storage/via-dotdot/xl.cfg").is_file());
    assert!(dir.join("site/state/deployments/via-dotdot.json").is_file());
    assert!(!recipe.join("storage").exists() && !recipe.join("state").exists());

    // a relative path in the site file may itself start with `..`
    let other = tmp.path().join("other/conf");
    std::fs::create_dir_all(&other).unwrap();
    let text = std::fs::read_to_string(dir.join("site/site.toml"))
        .unwrap()
        .replace("state_dir = \"state\"", "state_dir = \"../state\"")
        .replace(
            "storage_dir = \"storage\"",
            "storage_dir = \"./../storage\"",
        );
    std::fs::write(other.join("site.toml"), text).unwrap();
    let o = ok(wafer_in(
        &recipe,
        &[
            "deploy",
            "../wafers/squid-fixed",
            "--site",
            "../../other/conf/site.toml",
            "--dry-run",
        ],
    ));
    assert!(
        tmp.path()
            .join("other/storage/cms-demo-frontier-squid/xl.cfg")
            .is_file(),
        "{}",
        stdout(&o)
    );
    assert!(tmp
        .path()
        .join("other/state/deployments/cms-demo-frontier-squid.json")
        .is_file());
    // `..` after a name is still refused, naming the field
    let text = std::fs::read_to_string(other.join("site.toml"))
        .unwrap()
        .replace("state_dir = \"../state\"", "state_dir = \"x/../state\"");
    std::fs::write(other.join("site.toml"), text).unwrap();
    let o = wafer_in(&other, &["ps", "--site", "site.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("paths.state_dir"), "{}", stderr(&o));
}

#[test]
fn deploy_without_xl_is_an_error_and_a_dry_run_is_never_running() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = demo(tmp.path());
    let state = dir.join("site/state");
    let storage = dir.join("site/storage");
    let (st0, sto0) = (state_snapshot(&state), state_snapshot(&storage));
    let o = wafer_in(
        &dir,
        &[
            "deploy",
            "wafers/squid-fixed",
            "--site",
            "site/site.toml",
            "--name",
            "for-real",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let e = stderr(&o);
    assert!(e.contains("no `xl`") && e.contains("--dry-run"), "{e}");
    assert!(!stdout(&o).contains("deployed"), "{}", stdout(&o));
    assert_eq!(state_snapshot(&state), st0, "nothing leased or recorded");
    assert_eq!(state_snapshot(&storage), sto0, "nothing written");

    // the demo's dry run: ps never calls it running
    let ps = stdout(&ok(wafer_in(&dir, &["ps", "--site", "site/site.toml"])));
    let line = ps
        .lines()
        .find(|l| l.starts_with("cms-demo-frontier-squid"))
        .unwrap_or_else(|| panic!("{ps}"));
    assert!(
        line.contains("not-started") && line.contains("dry run"),
        "{line}"
    );
    assert!(!line.to_lowercase().contains("running"), "{line}");
    let v: serde_json::Value = serde_json::from_slice(
        &ok(wafer_in(
            &dir,
            &["ps", "--site", "site/site.toml", "--json"],
        ))
        .stdout,
    )
    .unwrap();
    assert_eq!(v["deployments"][0]["state"], "printed");

    // a dry run says so instead of "deployed"
    let o = ok(wafer_in(
        &dir,
        &[
            "deploy",
            "wafers/squid-fixed",
            "--site",
            "site/site.toml",
            "--dry-run",
            "--name",
            "dry",
            "--slot",
            "edge2",
        ],
    ));
    let out = stdout(&o);
    assert!(
        out.starts_with("prepared (dry run: no guest was started)"),
        "{out}"
    );
    assert!(!out.contains("deployed"), "{out}");
}

#[test]
fn unknown_names_list_what_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = demo(tmp.path());
    let o = wafer_in(&dir, &["stop", "cms-nope", "--site", "site/site.toml"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("cms-nope") && e.contains("its deployments: cms-demo-frontier-squid"),
        "{e}"
    );

    // a site without deployments says so, and creates nothing
    let fresh = tmp.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    std::fs::copy(dir.join("site/site.toml"), fresh.join("site.toml")).unwrap();
    let o = wafer_in(&fresh, &["stop", "x", "--site", "site.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("it has no deployments"),
        "{}",
        stderr(&o)
    );
    assert!(!fresh.join("state").exists());

    // --slot NAME: the site's slots are listed
    let o = wafer_in(
        &dir,
        &[
            "deploy",
            "wafers/squid-fixed",
            "--site",
            "site/site.toml",
            "--dry-run",
            "--name",
            "another",
            "--slot",
            "edge9",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("edge9") && e.contains("edge1") && e.contains("edge2"),
        "{e}"
    );
}

#[test]
fn verbose_logs_written_to_a_file_carry_no_colour_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = demo(tmp.path());
    let log = std::fs::File::create(tmp.path().join("log")).unwrap();
    let o = Command::new(WAFER)
        .args(["-vv", "inspect", "wafers/squid-fixed"])
        .current_dir(&dir)
        .stderr(log)
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = std::fs::read(tmp.path().join("log")).unwrap();
    assert!(
        String::from_utf8_lossy(&text).contains("DEBUG"),
        "-vv logged nothing: {}",
        String::from_utf8_lossy(&text)
    );
    assert!(
        !text.contains(&0x1b),
        "colour codes in a log file: {}",
        String::from_utf8_lossy(&text)
    );
}

#[test]
fn an_xl_that_reaches_no_hypervisor_fails_a_deploy_and_lets_a_dry_run_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = demo(tmp.path());
    // xen-utils installed on a host not booted under Xen: `xl list` fails as the real one does
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(
        bin.join("xl"),
        "#!/bin/sh\necho \"ERROR:  Can't find hypervisor information in sysfs!\" >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(bin.join("xl"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), path_without_xl());
    let run = |args: &[&str]| {
        Command::new(WAFER)
            .args(args)
            .current_dir(&dir)
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let state = dir.join("site/state");
    let before = state_snapshot(&state);
    let o = run(&[
        "deploy",
        "wafers/squid-fixed",
        "--site",
        "site/site.toml",
        "--name",
        "real",
        "--slot",
        "edge2",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("hypervisor information"),
        "{}",
        stderr(&o)
    );
    assert!(!stdout(&o).contains("deployed"));
    assert_eq!(state_snapshot(&state), before, "nothing leased or recorded");
    let o = ok(run(&[
        "deploy",
        "wafers/squid-fixed",
        "--site",
        "site/site.toml",
        "--name",
        "dry",
        "--slot",
        "edge2",
        "--dry-run",
    ]));
    assert!(
        stdout(&o).starts_with("prepared (dry run"),
        "{}",
        stdout(&o)
    );
}
