//! Every subcommand's --help teaches (long description and examples); completions and manual
//! pages are generated, and the real bash and man accept them.

mod common;

use std::process::Command;

use common::*;

const COMMANDS: &[&str] = &[
    "build",
    "inspect",
    "vet",
    "diff",
    "key",
    "approve",
    "verify",
    "push",
    "pull",
    "deploy",
    "slots",
    "ps",
    "stop",
    "recover",
    "completions",
    "man",
];

#[test]
fn every_command_help_has_examples() {
    for c in COMMANDS {
        let o = ok(wafer(&[c, "--help"]));
        let text = stdout(&o);
        assert!(
            text.contains("Example"),
            "wafer {c} --help has no examples:\n{text}"
        );
        assert!(
            text.contains(&format!("wafer {c}")),
            "wafer {c} --help shows no command line:\n{text}"
        );
    }
    let o = wafer(&["vet", "image"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--policy"), "{}", stderr(&o));
}

#[test]
fn completions_load_in_bash_and_man_pages_render() {
    let tmp = tempfile::tempdir().unwrap();
    let o = ok(wafer(&["completions", "bash"]));
    let script = tmp.path().join("wafer.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    run(Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p wafer", script.display())));
    for sh in ["zsh", "fish", "elvish", "powershell"] {
        assert!(!ok(wafer(&["completions", sh])).stdout.is_empty());
    }
    let o = wafer(&["completions", "tcsh"]);
    assert!(!o.status.success());

    let dir = tmp.path().join("man1");
    let o = ok(wafer(&["man", "-o", s(&dir)]));
    // It says what it wrote.
    assert!(
        stdout(&o).contains(&format!("manual pages into {}", dir.display())),
        "{}",
        stdout(&o)
    );
    for c in COMMANDS {
        assert!(
            dir.join(format!("wafer-{c}.1")).is_file(),
            "no page for {c}"
        );
    }
    let page = std::fs::read_to_string(dir.join("wafer-deploy.1")).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH wafer-deploy"),
        "{}",
        &page[..200.min(page.len())]
    );
    // groff renders it without warnings.
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(dir.join("wafer.1"))
        .output();
    if let Ok(out) = out {
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        panic!("groff is needed (Debian package groff-base)");
    }
    let o = ok(wafer(&["man"]));
    assert!(stdout(&o).contains(".TH wafer"));
}

/// Command lines of README.md's fenced blocks that the README walk does not run, and why.
const README_NOT_RUN: &[(&str, &str)] = &[
    (
        "cargo install --path .",
        "builds and installs the release binary (minutes); the walk runs the binary cargo built for \
         this test, put on the PATH as `wafer`",
    ),
    (
        "scripts/test",
        "is this test suite itself (it installs the oracle packages, then runs cargo test)",
    ),
];

/// The fenced blocks of README.md: (language, text).
fn readme_blocks() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut blocks = Vec::new();
    let mut cur: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("```") {
            match cur.take() {
                Some(b) => blocks.push(b),
                None => cur = Some((rest.trim().to_string(), String::new())),
            }
        } else if let Some((_, body)) = cur.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    assert!(cur.is_none(), "README.md has an unclosed fenced block");
    blocks
}

/// The uid to run the walk as: nobody's when this runs as root (and `runuser` exists), else
/// none (the current user, unprivileged already).
fn unprivileged() -> Option<u32> {
    let me = Command::new("id").arg("-u").output().expect("id");
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return None;
    }
    let o = Command::new("id")
        .args(["-u", "nobody"])
        .output()
        .expect("id (Debian package coreutils)");
    assert!(
        o.status.success(),
        "no user nobody to run the README walk as"
    );
    Some(
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .expect("uid"),
    )
}

/// README.md followed to the letter, as a new user would, in a fresh folder with a fresh HOME,
/// as an unprivileged user (nobody, when the tests run as root): every command of its fenced
/// blocks runs in order (but the ones in [`README_NOT_RUN`], each with its reason), each must
/// succeed, and every output the README promises is there.
#[test]
fn readme_commands_run_as_written_by_an_unprivileged_user() {
    let blocks = readme_blocks();
    assert!(blocks.len() >= 6, "README.md lost its command blocks");
    let mut script = String::from(
        "set -euo pipefail\ntrap 'echo \"README command failed: $BASH_COMMAND\" >&2' ERR\n",
    );
    let mut skipped = Vec::new();
    let mut wafer_lines = 0;
    for (lang, body) in &blocks {
        assert!(
            lang == "sh",
            "a README block in {lang:?}, not sh: the walk would not run it"
        );
        for line in body.lines() {
            let t = line.trim_start();
            if let Some((cmd, why)) = README_NOT_RUN.iter().find(|(c, _)| t.starts_with(c)) {
                skipped.push(format!("{cmd}: {why}"));
                continue;
            }
            if t.starts_with("wafer ") {
                wafer_lines += 1;
            }
            script.push_str(line);
            script.push('\n');
        }
    }
    assert_eq!(skipped.len(), README_NOT_RUN.len(), "{skipped:?}");
    assert!(
        wafer_lines >= 18,
        "only {wafer_lines} wafer commands in README.md"
    );

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (bin, home, work) = (root.join("bin"), root.join("home"), root.join("work"));
    for d in [&bin, &home, &work] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::copy(env!("CARGO_BIN_EXE_wafer"), bin.join("wafer")).unwrap();
    let script_path = root.join("readme.sh");
    std::fs::write(&script_path, &script).unwrap();
    let user = unprivileged();
    {
        use std::os::unix::fs::PermissionsExt;
        for p in [root, bin.as_path(), script_path.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        if let Some(uid) = user {
            for d in [&home, &work] {
                std::os::unix::fs::chown(d, Some(uid), Some(uid)).unwrap();
            }
        }
    }
    // A login-like environment: nothing of the test's, the PATH a user has, wafer installed.
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display());
    let mut cmd = match user {
        Some(_) => {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]);
            c.arg("env");
            c
        }
        None => Command::new("env"),
    };
    cmd.arg("-i")
        .arg(format!("HOME={}", home.display()))
        .arg(format!("PATH={path}"))
        .arg("LANG=C.UTF-8")
        .arg("bash")
        .arg(&script_path)
        .current_dir(&work);
    let o = cmd
        .output()
        .expect("runuser (Debian package util-linux) and bash");
    assert!(
        o.status.success(),
        "the README's commands failed ({}) as {}:\nstderr: {}\nstdout (end): {}",
        o.status,
        if user.is_some() {
            "nobody"
        } else {
            "the current user"
        },
        stderr(&o),
        stdout(&o)
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let out = stdout(&o);
    assert!(out.contains("wafer 0.1.0"), "wafer --version");

    // Everything the README promises.
    let demo = work.join("wafer-demo");
    for p in [
        "recipe/recipe.toml",
        "recipe/recipe-fixed.toml",
        "recipe/centos5-demo-base.img",
        "recipe/centos5-demo-base-updated.img",
        "recipe/demo-policy.toml",
        "wafers/squid-planted/wafer.json",
        "wafers/squid-planted/disk.img.zst",
        "wafers/squid-planted/build-report.json",
        "wafers/squid-fixed/wafer.json",
        "wafers/squid-fixed-tampered/disk.img.zst",
        "reports/vet-planted.html",
        "reports/vet-fixed.html",
        "reports/vet-planted.json",
        "reports/vet-fixed.json",
        "keys/demo-reviewer.pub",
        "trust/trust.toml",
        "site/site.toml",
    ] {
        assert!(demo.join(p).is_file(), "wafer-demo/{p} missing");
    }
    for d in ["site/storage", "site/state"] {
        assert!(demo.join(d).is_dir(), "wafer-demo/{d} missing");
    }
    let title = |p: &str| -> String {
        let h = std::fs::read_to_string(demo.join(p)).unwrap();
        let a = h.find("<title>").expect("title") + 7;
        let b = h.find("</title>").expect("title end");
        h[a..b].to_string()
    };
    let (tp, tf) = (
        title("reports/vet-planted.html"),
        title("reports/vet-fixed.html"),
    );
    assert_ne!(tp, tf, "the planted and fixed reports share a title");
    assert!(tp.contains("FAIL") && tp.contains("2.6.21-1"), "{tp}");
    assert!(tf.contains("PASS") && tf.contains("2.6.21-2"), "{tf}");
    for p in [
        "out/squid-2.6.21-1/wafer.json",
        "out/squid-2.6.21-2/wafer.json",
        "out/squid-2.6.21-2/attestations/provenance.json",
        "inventory.json",
        "report.html",
        "report.sarif",
        "trust/trust.toml",
    ] {
        assert!(work.join(p).is_file(), "{p} missing");
    }
    let approvals = std::fs::read_dir(work.join("out/squid-2.6.21-2/attestations"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("approval-"))
        .count();
    assert_eq!(approvals, 1, "alice's approval");
    for k in ["cms-admin.key", "cms-admin.pub", "alice.key", "alice.pub"] {
        assert!(
            home.join(".wafer").join(k).is_file(),
            "~/.wafer/{k} missing"
        );
    }
    let inv: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("inventory.json")).unwrap()).unwrap();
    assert!(inv.is_object(), "inventory.json");
    if let Some(uid) = user {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(demo.join("wafers/squid-fixed/wafer.json")).unwrap();
        assert_eq!(m.uid(), uid, "the walk did not run as nobody");
    }
    // verify printed its checks and passed (the script stops at a failing command).
    assert!(out.contains("RESULT: PASSED"), "{out}");
    // No temporary left behind anywhere.
    let mut stack = vec![work.clone(), home.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            assert!(
                !n.contains(".wafer-tmp-"),
                "temporary left: {}",
                e.path().display()
            );
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
}
