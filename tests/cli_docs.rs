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
    ok(wafer(&["man", "-o", s(&dir)]));
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
