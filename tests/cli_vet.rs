//! `wafer vet` exit statuses (0 pass, 1 fail, 2 could not vet), reports, --since, --fail-on,
//! --name/--vo; and `wafer diff`.

mod common;

use std::path::PathBuf;

use common::*;

pub const POLICY: &str = r#"[policy]
name = "test site"
fail_on = "medium"

[[privileged]]
id = "priv.allowlist"
severity = "high"
check = ["setuid", "setgid", "capabilities"]
allow = []

[[files]]
id = "files.empty-passwords"
severity = "critical"
check = "empty-passwords"
"#;

/// A fixture, a policy, a bundle with a planted setuid binary (1.0) and one without (1.1).
fn bundles() -> (Fixture, PathBuf, PathBuf, PathBuf) {
    let f = Fixture::new(|r| put(r, "usr/bin/evil", &fake_elf()));
    let policy = f.path("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let bad = f.build(
        &f.recipe_named(
            "v1.toml",
            "cms-squid",
            "1.0",
            "[[step]]\ntype = \"chmod\"\npaths = [\"/usr/bin/evil\"]\nmode = \"4755\"\n",
        ),
        "squid-1.0",
    );
    let good = f.build(
        &f.recipe_named("v2.toml", "cms-squid", "1.1", ""),
        "squid-1.1",
    );
    (f, policy, bad, good)
}

#[test]
fn vet_fails_a_planted_setuid_and_passes_the_fixed_wafer() {
    let (f, policy, bad, good) = bundles();
    let sarif = f.path("r.sarif");
    let html = f.path("r.html");
    let o = wafer(&[
        "vet",
        s(&bad),
        "--policy",
        s(&policy),
        "--sarif",
        s(&sarif),
        "--html",
        s(&html),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("FAIL wafer cms-squid"), "{text}");
    assert!(
        text.contains("priv.allowlist /usr/bin/evil is setuid"),
        "{text}"
    );
    let sv: serde_json::Value = serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap();
    assert_eq!(sv["version"], "2.1.0");
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .contains("/usr/bin/evil"));

    let o = wafer(&["vet", s(&good), "--policy", s(&policy), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["outcome"], "pass");
    assert_eq!(v["wafer"], "cms-squid");
    assert_eq!(v["vo"], "cms");

    // --fail-on critical: the high finding no longer blocks.
    let o = wafer(&[
        "vet",
        s(&bad),
        "--policy",
        s(&policy),
        "--fail-on",
        "critical",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    // --since: the finding is already in the older image, so it is known, not new.
    let o = wafer(&[
        "vet",
        s(&bad),
        "--policy",
        s(&policy),
        "--since",
        s(&bad),
        "--json",
        "--name",
        "other",
        "--vo",
        "atlas",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["totals"]["known"], 1, "{}", v["totals"]);
    assert_eq!(v["totals"]["new"], 0);
    assert_eq!(v["wafer"], "other");
    assert_eq!(v["vo"], "atlas");
}

#[test]
fn vet_could_not_vet_exits_2_naming_the_file() {
    let (f, policy, _bad, good) = bundles();
    let o = wafer(&["vet", s(&good), "--policy", s(&f.path("missing.toml"))]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing.toml"), "{}", stderr(&o));

    let broken = f.path("broken.toml");
    std::fs::write(
        &broken,
        POLICY.replace("severity = \"high\"", "severity = \"high\"\nbogus = 1"),
    )
    .unwrap();
    let o = wafer(&["vet", s(&good), "--policy", s(&broken)]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("broken.toml:8:"), "{e}");

    let o = wafer(&["vet", s(&f.path("nothing-here")), "--policy", s(&policy)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nothing-here"), "{}", stderr(&o));
}

#[test]
fn diff_shows_the_setuid_change() {
    let (_f, _policy, bad, good) = bundles();
    let o = ok(wafer(&["diff", s(&bad), s(&good), "--json"]));
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let text = d.to_string();
    assert!(text.contains("/usr/bin/evil"), "{text}");
    let o = ok(wafer(&["diff", s(&bad), s(&good)]));
    assert!(stdout(&o).contains("/usr/bin/evil"), "{}", stdout(&o));
    let o = wafer(&["diff", s(&bad), "/nonexistent/new"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent/new"));
}
