//! `wafer X | head -1` for every command with output: wafer ends by SIGPIPE (status 141 in a
//! shell) or 0 (or the command's own verdict when it finished writing first), never with a
//! panic, a backtrace or exit 101. Each command also runs into a pipe whose reader is already
//! gone, so its first write fails for certain.

mod common;

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use common::*;

const WAFER: &str = env!("CARGO_BIN_EXE_wafer");

/// `PATH` without any folder holding an `xl`.
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

fn command(cwd: &Path, args: &[String]) -> Command {
    let mut c = Command::new(WAFER);
    c.args(args)
        .current_dir(cwd)
        .env("PATH", path_without_xl())
        .env("WAFER_PASSPHRASE", "pipes")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null());
    c
}

/// A pipe whose read end is closed: (write end).
fn widowed_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two new descriptors that we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: as above.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(r);
    w
}

fn quiet_end(what: &str, status: ExitStatus, normal: Option<i32>, err: &str) -> Result<(), String> {
    let by_sigpipe = status.signal() == Some(libc::SIGPIPE);
    let ok_code = status.code() == Some(0) || (normal.is_some() && status.code() == normal);
    if !(by_sigpipe || ok_code) {
        return Err(format!("{what}: ended with {status}, stderr: {err}"));
    }
    for bad in ["panicked", "Broken pipe", "backtrace", "os error 32"] {
        if err.contains(bad) {
            return Err(format!("{what}: stderr says {bad:?}: {err}"));
        }
    }
    Ok(())
}

#[test]
fn every_command_with_output_ends_quietly_when_the_reader_goes_away() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let d = t.join("wafer-demo");
    ok(command(t, &["demo".into(), s(&d).into()]).output().unwrap());
    let key = d.join("keys/demo-reviewer.key");

    // the commands, each in a fresh output location per run (`{n}` is the run's number)
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("help", vec!["--help".into()]),
        ("completions", vec!["completions".into(), "bash".into()]),
        ("man", vec!["man".into()]),
        (
            "key id",
            vec![
                "key".into(),
                "id".into(),
                s(&d.join("keys/demo-reviewer.pub")).into(),
            ],
        ),
        (
            "key generate",
            vec![
                "key".into(),
                "generate".into(),
                "k{n}".into(),
                "--dir".into(),
                s(&t.join("keys")).into(),
            ],
        ),
        (
            "ls",
            vec![
                "ls".into(),
                s(&d.join("recipe/centos5-demo-base.img")).into(),
                "--long".into(),
            ],
        ),
        (
            "ls --json",
            vec![
                "ls".into(),
                s(&d.join("recipe/centos5-demo-base.img")).into(),
                "--json".into(),
            ],
        ),
        (
            "inspect",
            vec!["inspect".into(), s(&d.join("wafers/squid-planted")).into()],
        ),
        (
            "inspect --json",
            vec![
                "inspect".into(),
                s(&d.join("wafers/squid-planted")).into(),
                "--json".into(),
            ],
        ),
        (
            "vet",
            vec![
                "vet".into(),
                s(&d.join("wafers/squid-planted")).into(),
                "--policy".into(),
                s(&d.join("recipe/demo-policy.toml")).into(),
            ],
        ),
        (
            "vet --json",
            vec![
                "vet".into(),
                s(&d.join("wafers/squid-fixed")).into(),
                "--policy".into(),
                s(&d.join("recipe/demo-policy.toml")).into(),
                "--json".into(),
            ],
        ),
        (
            "diff",
            vec![
                "diff".into(),
                s(&d.join("wafers/squid-planted")).into(),
                s(&d.join("wafers/squid-fixed")).into(),
            ],
        ),
        (
            "verify",
            vec![
                "verify".into(),
                s(&d.join("wafers/squid-fixed")).into(),
                "--trust".into(),
                s(&d.join("trust")).into(),
            ],
        ),
        (
            "verify tampered",
            vec![
                "verify".into(),
                s(&d.join("wafers/squid-fixed-tampered")).into(),
                "--trust".into(),
                s(&d.join("trust")).into(),
            ],
        ),
        (
            "slots",
            vec![
                "slots".into(),
                "--site".into(),
                s(&d.join("site/site.toml")).into(),
            ],
        ),
        (
            "slots --json",
            vec![
                "slots".into(),
                "--site".into(),
                s(&d.join("site/site.toml")).into(),
                "--json".into(),
            ],
        ),
        (
            "ps",
            vec![
                "ps".into(),
                "--site".into(),
                s(&d.join("site/site.toml")).into(),
            ],
        ),
        (
            "ps --json",
            vec![
                "ps".into(),
                "--site".into(),
                s(&d.join("site/site.toml")).into(),
                "--json".into(),
            ],
        ),
        (
            "recover",
            vec![
                "recover".into(),
                "--site".into(),
                s(&d.join("site/site.toml")).into(),
                "--dry-run".into(),
            ],
        ),
        (
            "build --json",
            vec![
                "build".into(),
                s(&d.join("recipe/recipe-fixed.toml")).into(),
                "-o".into(),
                s(&t.join("build{n}")).into(),
                "--json".into(),
            ],
        ),
        (
            "build",
            vec![
                "build".into(),
                s(&d.join("recipe/recipe-fixed.toml")).into(),
                "-o".into(),
                s(&t.join("plain{n}")).into(),
            ],
        ),
        (
            "mkfs",
            vec![
                "mkfs".into(),
                s(&d.join("recipe/centos5-demo-base.img")).into(),
                "-o".into(),
                s(&t.join("mkfs{n}.img")).into(),
            ],
        ),
        (
            "approve",
            vec![
                "approve".into(),
                s(&d.join("wafers/squid-fixed")).into(),
                "--key".into(),
                s(&key).into(),
                "--policy".into(),
                s(&d.join("recipe/demo-policy.toml")).into(),
            ],
        ),
        ("demo", vec!["demo".into(), s(&t.join("demo{n}")).into()]),
    ];

    let mut failures = Vec::new();
    let mut n = 0;
    for (what, args) in &cases {
        let args_for = |n: i32| -> Vec<String> {
            args.iter()
                .map(|a| a.replace("{n}", &n.to_string()))
                .collect()
        };
        // how it ends when nobody closes anything: its own verdict (vet 1 for a failing image)
        n += 1;
        let normal = command(t, &args_for(n)).output().unwrap();
        if !(normal.status.success() || matches!(normal.status.code(), Some(1 | 2)))
            || normal.stdout.is_empty()
        {
            failures.push(format!(
                "{what}: does not run normally ({}): {}",
                normal.status,
                stderr(&normal)
            ));
            continue;
        }

        // 1. the reader is gone before wafer writes anything
        n += 1;
        let o = command(t, &args_for(n))
            .stdout(Stdio::from(widowed_pipe()))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&o);
        if let Err(e) = quiet_end(&format!("{what} (closed pipe)"), o.status, None, &err) {
            failures.push(e);
        } else if o.status.signal() != Some(libc::SIGPIPE) {
            failures.push(format!(
                "{what} (closed pipe): {} instead of SIGPIPE: {err}",
                o.status
            ));
        }

        // 2. literally `wafer ... | head -1`, in bash
        n += 1;
        let mut script = String::from("\"$0\"");
        for i in 1..=args_for(n).len() {
            script.push_str(&format!(" \"${i}\""));
        }
        script.push_str(" | head -1 >/dev/null; exit ${PIPESTATUS[0]}");
        let o = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .arg(WAFER)
            .args(args_for(n))
            .current_dir(t)
            .env("PATH", path_without_xl())
            .env("WAFER_PASSPHRASE", "pipes")
            .stdin(Stdio::null())
            .output()
            .expect("bash");
        let err = stderr(&o);
        let status = o.status.code();
        let fine = status == Some(141) || status == Some(0) || status == normal.status.code();
        if !fine || err.contains("panicked") || err.contains("Broken pipe") {
            failures.push(format!(
                "{what} | head -1: status {status:?}, stderr: {err}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
