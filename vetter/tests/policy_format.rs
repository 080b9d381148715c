//! The policy file: the documented example parses; unknown keys and bad values are refused with
//! file, line and column; advisory version comparison agrees with the real rpm and dpkg.

use std::cmp::Ordering;
use std::process::Command;
use vetter::policy::{Policy, PolicyError, Severity};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/policy.example.toml");

#[test]
fn the_documented_example_parses() {
    let p = Policy::load(std::path::Path::new(EXAMPLE)).unwrap();
    assert_eq!(p.file.policy.name, "Example grid site edge-services policy");
    assert_eq!(p.fail_on(), Severity::Medium);
    let ids: Vec<String> = p.rules().into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 16);
    for id in [
        "net.listeners",
        "priv.allowlist",
        "pkg.versions",
        "pkg.advisories",
        "files.host-keys",
        "elf.pie",
        "elf.nx",
        "boot.xen",
    ] {
        assert!(ids.iter().any(|i| i == id), "{id}");
    }
    // The advisory list was loaded and hashed into the digest.
    assert_eq!(p.advisories.iter().map(Vec::len).sum::<usize>(), 3);
    assert_eq!(p.advisories[1][1].id, "RHSA-2014:1306");
    assert_eq!(p.minimums[0][0].version, "0.9.8e-27.el5_10.4");
    assert_eq!(p.file.waiver.len(), 2);
    assert_eq!(p.digest.len(), 64);
    // Every documented check kind of docs/policy.md appears in the example.
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/policy.md")).unwrap();
    for check in [
        "world-writable",
        "host-private-keys",
        "root-authorized-keys",
        "empty-passwords",
        "extra-uid0",
        "unowned-system-files",
        "modified-packaged-files",
    ] {
        assert!(doc.contains(check), "docs/policy.md documents {check}");
    }
}

fn err(text: &str) -> String {
    match Policy::parse(text, "p.toml", None) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unknown_keys_and_bad_values_are_located() {
    let e =
        err("[policy]\nname = \"x\"\n\n[[ports]]\nid = \"a\"\nseverity = \"high\"\nallowed = []\n");
    assert!(e.starts_with("p.toml:7:1: unknown field `allowed`"), "{e}");
    let e = err(
        "[[files]]\nid = \"f\"\nseverity = \"high\"\ncheck = \"world-writable\"\n  colour = 1\n",
    );
    assert!(e.starts_with("p.toml:5:3: unknown field `colour`"), "{e}");
    let e = err("[[files]]\nid = \"f\"\nseverity = \"severe\"\ncheck = \"world-writable\"\n");
    assert!(
        e.starts_with("p.toml:3:12: unknown variant `severe`"),
        "{e}"
    );
    let e = err("[[ports]]\nid = \"a\"\nseverity = \"high\"\nallow = [{ protocol = \"tcp\", port = 22, bind = \"any\", tls = true }]\n");
    assert!(e.starts_with("p.toml:4:"), "{e}");
    assert!(e.contains("unknown field `tls`"), "{e}");
    let e = err("[[packages]]\nid = \"p\"\nseverity = \"high\"\nminimum = [\"openssl = 1.0\"]\n");
    assert!(
        e.starts_with("p.toml:4:12: \"openssl = 1.0\": expected"),
        "{e}"
    );
    let e = err("[[elf]]\nid = \"e\"\nseverity = \"low\"\nrequire = \"pie\"\n[[elf]]\nid = \"e\"\nseverity = \"low\"\nrequire = \"nx\"\n");
    assert!(
        e.starts_with("p.toml:6:6: rule id \"e\" is used twice"),
        "{e}"
    );
    let e = err("[[elf]]\nid = \"e\"\nseverity = \"low\"\nrequire = \"pie\"\n[[waiver]]\nrule = \"nope\"\nsubject = \"*\"\njustification = \"j\"\nexpires = 2026-01-01\n");
    assert!(
        e.starts_with("p.toml:6:8: waiver names rule \"nope\""),
        "{e}"
    );
    let e = err("[[elf]]\nid = \"e\"\nseverity = \"low\"\nrequire = \"pie\"\n[[waiver]]\nrule = \"e\"\nsubject = \"*\"\njustification = \"j\"\nexpires = 2026-01-01T10:00:00Z\n");
    assert!(e.starts_with("p.toml:9:11: expires must be a date"), "{e}");
    let e = err("[[ports]]\nid = \"a\"\nseverity = \"high\"\nallow = [{ protocol = \"tcp\", port = 22, range = [1, 2], bind = \"any\" }]\n");
    assert!(e.contains("exactly one of port or range"), "{e}");
    let e = err("[[privileged]]\nid = \"a\"\nseverity = \"high\"\nallow = [{ path = \"/bin/su\", sha256 = \"abc\" }]\n");
    assert!(e.contains("64 hex digits"), "{e}");
    let e = err(
        "[[packages]]\nid = \"p\"\nseverity = \"high\"\nadvisories = \"/nonexistent/list.csv\"\n",
    );
    assert!(
        e.starts_with("p.toml:4:14: advisory list /nonexistent/list.csv:"),
        "{e}"
    );
    assert!(matches!(
        Policy::parse("x = [", "p.toml", None),
        Err(PolicyError::Syntax { line: 1, .. })
    ));
}

#[test]
fn advisory_files_csv_and_json() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.json"), r#"[{"package":"bash","fixed":"0:4.1.2-15.el6_5.2","id":"RHSA-2014:1306","severity":"critical"}]"#).unwrap();
    std::fs::write(
        dir.path().join("bad.csv"),
        "package,fixed,id\nopenssl,1.0,A\nbroken line with spaces,1,B\n",
    )
    .unwrap();
    let pol =
        |f: &str| format!("[[packages]]\nid = \"p\"\nseverity = \"low\"\nadvisories = \"{f}\"\n");
    let p = Policy::parse(&pol("a.json"), "p.toml", Some(dir.path())).unwrap();
    assert_eq!(p.advisories[0][0].severity, Some(Severity::Critical));
    let e = Policy::parse(&pol("bad.csv"), "p.toml", Some(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("bad.csv: line 3: bad package name \"broken line with spaces\""),
        "{e}"
    );
}

/// A small deterministic generator of version strings with the characters that matter.
struct Gen(u64);
impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
    fn part(&mut self, seps: &[&str]) -> String {
        let n = 1 + self.next() % 4;
        let mut s = String::new();
        for i in 0..n {
            if i > 0 {
                s.push_str(self.pick(seps));
            }
            s.push_str(self.pick(&[
                "0", "1", "2", "10", "01", "9", "a", "b", "rc", "el5", "27", "e",
            ]));
        }
        s
    }
}

fn installed_rpm(evr: &str) -> vetter::packages::PackageInfo {
    let e = pkgdb::version::Evr::parse(evr);
    vetter::packages::PackageInfo {
        manager: "rpm".into(),
        name: "p".into(),
        epoch: e.epoch.as_deref().and_then(|x| x.parse().ok()),
        version: e.version,
        release: e.release,
        arch: None,
        source: None,
        vendor: None,
        license: None,
        install_time: None,
        purl: String::new(),
        files: 0,
        file_list_error: None,
        status: None,
        requires: Vec::new(),
        provides: Vec::new(),
    }
}

/// The policy's advisory/minimum decision (installed older than fixed) agrees with rpm's own
/// `rpm.vercmp` on generated rpm versions, and with `dpkg --compare-versions` on dpkg versions.
#[test]
fn advisory_comparison_agrees_with_real_rpm_and_dpkg() {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let mut pairs = Vec::new();
    for _ in 0..300 {
        let mk = |g: &mut Gen| {
            let epoch = if g.next() % 4 == 0 {
                format!("{}:", g.next() % 3)
            } else {
                String::new()
            };
            format!(
                "{epoch}{}-{}",
                g.part(&[".", ".", "~", "^", "_"]),
                g.part(&[".", "_"])
            )
        };
        pairs.push((mk(&mut g), mk(&mut g)));
    }
    let lua: String = pairs
        .iter()
        .map(|(a, b)| format!("print(rpm.vercmp(\"{a}\", \"{b}\") .. \" \") "))
        .collect();
    let out = Command::new("rpm")
        .arg("--eval")
        .arg(format!("%{{lua: {lua}}}"))
        .output()
        .expect("rpm is needed for this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<i32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(answers.len(), pairs.len());
    for ((a, b), want) in pairs.iter().zip(answers) {
        let p = installed_rpm(a);
        let ours = vetter::policy::compare_installed_version(&p, b).unwrap();
        assert_eq!(ours, want.cmp(&0), "rpm.vercmp({a}, {b}) = {want}");
    }
    // dpkg.
    let mut checked = 0;
    for _ in 0..150 {
        let mk = |g: &mut Gen| {
            let epoch = if g.next() % 5 == 0 {
                format!("{}:", g.next() % 3)
            } else {
                String::new()
            };
            let rev = if g.next() % 3 == 0 {
                String::new()
            } else {
                format!("-{}", g.part(&[".", "+", "~"]))
            };
            let up = format!(
                "{}{}",
                g.pick(&["0", "1", "2", "10"]),
                g.part(&[".", "+", "~", "."])
            );
            format!("{epoch}{up}{rev}")
        };
        let (a, b) = (mk(&mut g), mk(&mut g));
        let p = vetter::packages::PackageInfo {
            manager: "dpkg".into(),
            epoch: None,
            release: None,
            version: a.clone(),
            ..installed_rpm("1")
        };
        let Ok(ours) = vetter::policy::compare_installed_version(&p, &b) else {
            continue;
        };
        let lt = Command::new("dpkg")
            .args(["--compare-versions", &a, "lt", &b])
            .status()
            .expect("dpkg is needed for this test")
            .success();
        let gt = Command::new("dpkg")
            .args(["--compare-versions", &a, "gt", &b])
            .status()
            .unwrap()
            .success();
        let theirs = if lt {
            Ordering::Less
        } else if gt {
            Ordering::Greater
        } else {
            Ordering::Equal
        };
        assert_eq!(ours, theirs, "dpkg --compare-versions {a} {b}");
        checked += 1;
    }
    assert!(checked > 100, "{checked}");
}
