//! A wafer with planted problems, built in the test with real ELF binaries (gcc), a real rpm
//! database (rpmbuild + rpm --justdb, sqlite backend), xinetd and squid configurations, fails with
//! exactly those findings and their provenance; the same wafer fixed passes; waivers apply until
//! they expire; `--since` marks findings new or known; the inventory diff sees the changes.

mod common;
use common::*;
use rootfs::Tree;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use vetter::policy::{
    evaluate, exit_code, EvalContext, Evidence, Outcome, Policy, Severity, WaiverState,
};

/// 2026-06-01T00:00:00Z.
const NOW: i64 = 1_780_272_000;

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is needed for this test: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Built {
    _dir: tempfile::TempDir,
    pie: Vec<u8>,
    nopie: Vec<u8>,
    other_pie: Vec<u8>,
    db_old_openssl: Vec<u8>,
    db_new_openssl: Vec<u8>,
}

const OPENSSL_SCRIPT: &str = "#!/bin/sh\necho OpenSSL 0.9.8e-fips-rhel5\n";

fn spec(name: &str, version: &str, release: &str, files: &str, install: &str) -> String {
    format!(
        "Name: {name}\nVersion: {version}\nRelease: {release}\nSummary: wafer policy test package\nLicense: MIT\nBuildArch: noarch\n\
         %define __os_install_post %{{nil}}\n%define debug_package %{{nil}}\n%define _build_id_links none\n\
         %define _binaries_in_noarch_packages_terminate_build 0\n%description\ntest\n%install\n{install}\n%files\n{files}\n"
    )
}

fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("main.c"), "#include <stdio.h>\nint main(int c, char **v) { puts(c > 1 ? v[1] : \"wafer\"); return 0; }\n").unwrap();
        std::fs::write(d.join("other.c"), "#include <stdio.h>\nint main(void) { puts(\"other\"); return 1; }\n").unwrap();
        let cc = |src: &str, out: &str, flags: &[&str]| -> Vec<u8> {
            let mut a: Vec<&str> = vec!["-O1", "-o"];
            let o = d.join(out);
            a.push(o.to_str().unwrap());
            let s = d.join(src);
            a.push(s.to_str().unwrap());
            a.extend_from_slice(flags);
            run("gcc", &a);
            std::fs::read(o).unwrap()
        };
        let pie = cc("main.c", "pie", &["-fPIE", "-pie", "-Wl,-z,relro,-z,now", "-Wl,-z,noexecstack"]);
        let nopie = cc("main.c", "nopie", &["-fno-pie", "-no-pie", "-Wl,-z,relro,-z,now", "-Wl,-z,noexecstack"]);
        let other_pie = cc("other.c", "other", &["-fPIE", "-pie", "-Wl,-z,relro,-z,now", "-Wl,-z,noexecstack"]);
        // Packages: openssl (two releases) and passwd shipping the PIE binary setuid.
        std::fs::write(d.join("openssl.sh"), OPENSSL_SCRIPT).unwrap();
        let top = d.join("rpmbuild");
        let mut rpms = Vec::new();
        let pie_path = d.join("pie");
        let sh_path = d.join("openssl.sh");
        for (name, version, release, files, install) in [
            (
                "openssl",
                "0.9.8e",
                "27.el5_10.1",
                "%attr(0755,root,root) /usr/bin/openssl\n%config(noreplace) /etc/pki/tls/openssl.cnf",
                format!(
                    "mkdir -p %{{buildroot}}/usr/bin %{{buildroot}}/etc/pki/tls\ncp {} %{{buildroot}}/usr/bin/openssl\necho '[ req ]' > %{{buildroot}}/etc/pki/tls/openssl.cnf",
                    sh_path.display()
                ),
            ),
            (
                "openssl",
                "0.9.8e",
                "27.el5_10.4",
                "%attr(0755,root,root) /usr/bin/openssl\n%config(noreplace) /etc/pki/tls/openssl.cnf",
                format!(
                    "mkdir -p %{{buildroot}}/usr/bin %{{buildroot}}/etc/pki/tls\ncp {} %{{buildroot}}/usr/bin/openssl\necho '[ req ]' > %{{buildroot}}/etc/pki/tls/openssl.cnf",
                    sh_path.display()
                ),
            ),
            (
                "passwd",
                "0.73",
                "2",
                "%attr(4755,root,root) /usr/bin/passwd",
                format!("mkdir -p %{{buildroot}}/usr/bin\ncp {} %{{buildroot}}/usr/bin/passwd", pie_path.display()),
            ),
        ] {
            let sp = d.join(format!("{name}-{release}.spec"));
            std::fs::write(&sp, spec(name, version, release, files, &install)).unwrap();
            run("rpmbuild", &["-bb", "--quiet", "--define", &format!("_topdir {}", top.display()), sp.to_str().unwrap()]);
            rpms.push(top.join(format!("RPMS/noarch/{name}-{version}-{release}.noarch.rpm")));
        }
        let db = |openssl: &Path, tag: &str| -> Vec<u8> {
            let p = d.join(format!("db-{tag}"));
            std::fs::create_dir_all(&p).unwrap();
            let ps = p.to_str().unwrap();
            run("rpm", &["--dbpath", ps, "--initdb"]);
            for r in [openssl, rpms[2].as_path()] {
                run("rpm", &["--dbpath", ps, "-i", "--justdb", "--nodeps", "--noscripts", "--ignorearch", "--ignoreos", r.to_str().unwrap()]);
            }
            std::fs::read(p.join("rpmdb.sqlite")).unwrap()
        };
        let db_old_openssl = db(&rpms[0], "old");
        let db_new_openssl = db(&rpms[1], "new");
        Built { pie, nopie, other_pie, db_old_openssl, db_new_openssl, _dir: dir }
    })
}

const SSH_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END RSA PRIVATE KEY-----\n";

/// Which problems to plant.
#[derive(Clone, Copy, Default)]
struct Plant {
    telnet: bool,
    squid_port: bool,
    extra_setuid: bool,
    old_openssl: bool,
    empty_root_password: bool,
    host_key: bool,
    nopie_setuid: bool,
    modified_file: bool,
}

const ALL: Plant = Plant {
    telnet: true,
    squid_port: true,
    extra_setuid: true,
    old_openssl: true,
    empty_root_password: true,
    host_key: true,
    nopie_setuid: true,
    modified_file: true,
};

fn wafer(p: Plant) -> Tree {
    let b = built();
    let mut t = Tree::new(meta(0o755));
    file(
        &mut t,
        "/etc/redhat-release",
        "Scientific Linux SL release 5.11 (Boron)\n",
    );
    file(&mut t, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nbin:x:1:1:bin:/bin:/sbin/nologin\nsquid:x:23:23::/var/spool/squid:/sbin/nologin\n");
    file(
        &mut t,
        "/etc/group",
        "root:x:0:root\nbin:x:1:\nsquid:x:23:\n",
    );
    let root_pw = if p.empty_root_password {
        ""
    } else {
        "$1$abc$def"
    };
    file(
        &mut t,
        "/etc/shadow",
        &format!(
            "root:{root_pw}:15000:0:99999:7:::\nbin:*:15000:0:99999:7:::\nsquid:!!:15000::::::\n"
        ),
    );
    file(
        &mut t,
        "/etc/services",
        "ssh 22/tcp\ntelnet 23/tcp\nsquid 3128/tcp\n",
    );
    // SysV init, runlevel 3: sshd, squid, xinetd.
    file(&mut t, "/etc/inittab", "id:3:initdefault:\n");
    file_mode(&mut t, "/sbin/init", &b.pie, 0o755);
    for s in ["sshd", "squid", "xinetd"] {
        file_mode(
            &mut t,
            &format!("/etc/rc.d/init.d/{s}"),
            b"#!/bin/sh\n",
            0o755,
        );
        symlink(
            &mut t,
            &format!("/etc/rc.d/rc3.d/S55{s}"),
            &format!("../init.d/{s}"),
        );
    }
    file(
        &mut t,
        "/etc/ssh/sshd_config",
        "Port 22\nPermitRootLogin without-password\n",
    );
    file(
        &mut t,
        "/etc/squid/squid.conf",
        if p.squid_port {
            "http_port 3128\nhttp_port 8081\n"
        } else {
            "http_port 3128\n"
        },
    );
    file(
        &mut t,
        "/etc/xinetd.conf",
        "defaults\n{\n instances = 60\n}\nincludedir /etc/xinetd.d\n",
    );
    let telnet_disable = if p.telnet { "no" } else { "yes" };
    file(&mut t, "/etc/xinetd.d/telnet", &format!("service telnet\n{{\n socket_type = stream\n server = /usr/sbin/in.telnetd\n disable = {telnet_disable}\n}}\n"));
    if p.host_key {
        file_mode(
            &mut t,
            "/etc/ssh/ssh_host_rsa_key",
            SSH_KEY.as_bytes(),
            0o600,
        );
    }
    // Packages and their files.
    let db = if p.old_openssl {
        &b.db_old_openssl
    } else {
        &b.db_new_openssl
    };
    file_mode(&mut t, "/var/lib/rpm/rpmdb.sqlite", db, 0o644);
    let openssl = if p.modified_file {
        format!("{OPENSSL_SCRIPT}# patched by hand\n")
    } else {
        OPENSSL_SCRIPT.to_string()
    };
    file_mode(&mut t, "/usr/bin/openssl", openssl.as_bytes(), 0o755);
    file(
        &mut t,
        "/etc/pki/tls/openssl.cnf",
        "[ req ]\ndefault_bits = 2048\n",
    ); // a changed %config file: allowed
    file_mode(&mut t, "/usr/bin/passwd", &b.pie, 0o4755);
    file_mode(
        &mut t,
        "/usr/sbin/userhelper",
        if p.nopie_setuid { &b.nopie } else { &b.pie },
        0o4711,
    );
    if p.extra_setuid {
        file_mode(&mut t, "/usr/local/bin/rootme", &b.other_pie, 0o4755);
    }
    dir(&mut t, "/tmp", 0o1777);
    // A Xen PV kernel.
    file(
        &mut t,
        "/boot/vmlinuz-2.6.18-398.el5xen",
        "not really a kernel",
    );
    file(&mut t, "/boot/config-2.6.18-398.el5xen", "CONFIG_XEN=y\n");
    t
}

const POLICY: &str = r#"
[policy]
name = "planted-problems test policy"
fail_on = "medium"

[[ports]]
id = "net.listeners"
severity = "high"
allow = [
  { protocol = "tcp", port = 22, bind = "any", service = "sshd" },
  { protocol = "tcp", range = [3128, 3130], bind = "any", service = "squid" },
]

[[privileged]]
id = "priv.allowlist"
severity = "high"
allow = [
  { path = "/usr/bin/passwd", package = "passwd" },
  { path = "/usr/sbin/userhelper" },
]

[[packages]]
id = "pkg.versions"
severity = "high"
minimum = ["openssl >= 0.9.8e-27.el5_10.4"]
banned = ["telnet-server"]

[[files]]
id = "files.world-writable"
severity = "medium"
check = "world-writable"
allow = ["/tmp"]

[[files]]
id = "files.host-keys"
severity = "critical"
check = "host-private-keys"

[[files]]
id = "files.root-authorized-keys"
severity = "high"
check = "root-authorized-keys"

[[files]]
id = "files.empty-passwords"
severity = "critical"
check = "empty-passwords"

[[files]]
id = "files.extra-uid0"
severity = "critical"
check = "extra-uid0"

[[files]]
id = "files.modified"
severity = "high"
check = "modified-packaged-files"
allow = ["/etc/pki/tls/openssl.cnf"]

[[elf]]
id = "elf.pie"
severity = "medium"
require = "pie"

[[elf]]
id = "elf.relro"
severity = "low"
require = "full-relro"

[[elf]]
id = "elf.nx"
severity = "high"
require = "nx"

[[boot]]
id = "boot.xen"
severity = "critical"
guest_type = "pv"
arch = ["x86_64"]
"#;

fn policy(extra: &str) -> Policy {
    Policy::parse(&format!("{POLICY}\n{extra}"), "test-policy.toml", None).unwrap()
}

fn ctx() -> EvalContext<'static> {
    EvalContext::new(NOW, "frontier-squid", Some("cms".into()))
}

fn keys(v: &vetter::policy::Verdict) -> Vec<(String, String)> {
    let mut k: Vec<(String, String)> = v
        .findings
        .iter()
        .map(|f| (f.rule.clone(), f.subject.clone()))
        .collect();
    k.sort();
    k
}

fn expected_all() -> Vec<(String, String)> {
    let mut e: Vec<(String, String)> = [
        ("net.listeners", "tcp/23"),
        ("net.listeners", "tcp/8081"),
        ("priv.allowlist", "/usr/local/bin/rootme"),
        ("pkg.versions", "openssl"),
        ("files.empty-passwords", "root"),
        ("files.host-keys", "/etc/ssh/ssh_host_rsa_key"),
        ("elf.pie", "/usr/sbin/userhelper"),
        ("files.modified", "/usr/bin/openssl"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    e.sort();
    e
}

#[test]
fn planted_problems_fail_with_exactly_those_findings_and_provenance() {
    let inv = inspect(&wafer(ALL));
    let v = evaluate(&inv, &policy(""), &ctx());
    assert_eq!(
        keys(&v),
        expected_all(),
        "{}",
        vetter::report::terminal(&v, false)
    );
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(exit_code::<()>(&Ok(v.clone())), 1);
    assert_eq!(v.totals.blocking, 8);
    let f = |rule: &str, subject: &str| {
        v.findings
            .iter()
            .find(|f| f.rule == rule && f.subject == subject)
            .unwrap()
    };
    // telnet: the xinetd file enabling it and the port from /etc/services.
    let telnet = f("net.listeners", "tcp/23");
    assert!(
        telnet.message.contains("telnet (xinetd)"),
        "{}",
        telnet.message
    );
    assert!(
        telnet.evidence.iter().any(|e| matches!(e, Evidence::File { path, line: Some(_), .. } if path == "/etc/xinetd.d/telnet")),
        "{:#?}",
        telnet.evidence
    );
    assert!(telnet
        .evidence
        .iter()
        .any(|e| matches!(e, Evidence::Port { port: 23, protocol, .. } if protocol == "tcp")));
    // squid: file and line of the http_port.
    let squid = f("net.listeners", "tcp/8081");
    assert!(squid
        .evidence
        .iter()
        .any(|e| matches!(e, Evidence::Port { file, line: Some(2), service, .. } if file == "/etc/squid/squid.conf" && service == "squid")));
    // openssl: package and version from the rpm database.
    let ossl = f("pkg.versions", "openssl");
    assert!(ossl.evidence.contains(&Evidence::Package {
        name: "openssl".into(),
        version: "0.9.8e-27.el5_10.1".into(),
        manager: "rpm".into()
    }));
    assert!(ossl
        .evidence
        .iter()
        .any(|e| matches!(e, Evidence::File { path, .. } if path == "/var/lib/rpm")));
    // root's empty password: /etc/passwd line 1.
    let pw = f("files.empty-passwords", "root");
    assert!(pw
        .evidence
        .iter()
        .any(|e| matches!(e, Evidence::File { path, line: Some(1), .. } if path == "/etc/passwd")));
    assert_eq!(pw.severity, Severity::Critical);
    // The non-PIE setuid binary, analysed for real.
    let np = f("elf.pie", "/usr/sbin/userhelper");
    assert!(
        np.message
            .contains("not position-independent (ELF type EXEC)"),
        "{}",
        np.message
    );
    // The modified packaged file names the package and what differs.
    let m = f("files.modified", "/usr/bin/openssl");
    assert!(
        m.message.contains("openssl-0.9.8e-27.el5_10.1") && m.message.contains("digest"),
        "{}",
        m.message
    );
    let setuid = f("priv.allowlist", "/usr/local/bin/rootme");
    assert!(
        setuid
            .evidence
            .iter()
            .any(|e| matches!(e, Evidence::File { text: Some(t), .. } if t.contains("mode 4755"))),
        "{:#?}",
        setuid.evidence
    );
    // Every finding has a remedy and at least one piece of evidence.
    assert!(v
        .findings
        .iter()
        .all(|f| !f.remedy.is_empty() && !f.evidence.is_empty()));
}

#[test]
fn fixed_wafer_passes() {
    let inv = inspect(&wafer(Plant::default()));
    let v = evaluate(&inv, &policy(""), &ctx());
    assert_eq!(keys(&v), vec![], "{}", vetter::report::terminal(&v, false));
    assert_eq!(v.outcome, Outcome::Pass);
    assert_eq!(v.exit_code(), 0);
    assert!(v.rules.iter().all(|r| r.status == "pass"), "{:#?}", v.rules);
    // Each planted problem alone fails with exactly its finding.
    let single: [(Plant, &str); 8] = [
        (
            Plant {
                telnet: true,
                ..Default::default()
            },
            "tcp/23",
        ),
        (
            Plant {
                squid_port: true,
                ..Default::default()
            },
            "tcp/8081",
        ),
        (
            Plant {
                extra_setuid: true,
                ..Default::default()
            },
            "/usr/local/bin/rootme",
        ),
        (
            Plant {
                old_openssl: true,
                ..Default::default()
            },
            "openssl",
        ),
        (
            Plant {
                empty_root_password: true,
                ..Default::default()
            },
            "root",
        ),
        (
            Plant {
                host_key: true,
                ..Default::default()
            },
            "/etc/ssh/ssh_host_rsa_key",
        ),
        (
            Plant {
                nopie_setuid: true,
                ..Default::default()
            },
            "/usr/sbin/userhelper",
        ),
        (
            Plant {
                modified_file: true,
                ..Default::default()
            },
            "/usr/bin/openssl",
        ),
    ];
    for (p, subject) in single {
        let v = evaluate(&inspect(&wafer(p)), &policy(""), &ctx());
        assert_eq!(
            v.findings
                .iter()
                .map(|f| f.subject.as_str())
                .collect::<Vec<_>>(),
            vec![subject]
        );
        assert_eq!(v.outcome, Outcome::Fail);
    }
}

#[test]
fn setuid_pinned_as_shipped_by_a_package_checks_the_real_owner() {
    let inv = inspect(&wafer(Plant::default()));
    // The inventory records the owners of privileged files, by name, from the rpm database.
    assert_eq!(
        inv.packages.owners.get("/usr/bin/passwd"),
        Some(&vec!["passwd".to_string()]),
        "{:#?}",
        inv.packages.owners
    );
    assert!(!inv.packages.owners.contains_key("/usr/sbin/userhelper"));
    // Pinned to its real owner: passes (the base policy pins it to passwd).
    let ok = evaluate(&inv, &policy(""), &ctx());
    assert_eq!(
        keys(&ok),
        vec![],
        "{}",
        vetter::report::terminal(&ok, false)
    );
    // Pinned to another installed package (openssl, unmodified, installed): fails, naming passwd.
    let wrong = r#"
[[privileged]]
id = "priv.pinned"
severity = "high"
check = ["setuid"]
allow = [
  { path = "/usr/bin/passwd", package = "openssl" },
  { path = "/usr/sbin/userhelper", package = "passwd" },
]
"#;
    let v = evaluate(&inv, &policy(wrong), &ctx());
    assert_eq!(
        keys(&v),
        vec![
            ("priv.pinned".to_string(), "/usr/bin/passwd".to_string()),
            (
                "priv.pinned".to_string(),
                "/usr/sbin/userhelper".to_string()
            ),
        ],
        "{}",
        vetter::report::terminal(&v, false)
    );
    let msg = |subject: &str| {
        v.findings
            .iter()
            .find(|f| f.subject == subject)
            .map(|f| f.message.clone())
            .unwrap_or_default()
    };
    assert!(
        msg("/usr/bin/passwd").contains("it is shipped by passwd, not openssl"),
        "{}",
        msg("/usr/bin/passwd")
    );
    // userhelper is setuid but no package lists it.
    assert!(
        msg("/usr/sbin/userhelper").contains("no package owns it (expected passwd)"),
        "{}",
        msg("/usr/sbin/userhelper")
    );
    assert_eq!(v.outcome, Outcome::Fail);
}

#[test]
fn waivers_apply_until_they_expire() {
    let inv = inspect(&wafer(ALL));
    let waivers = r#"
[[waiver]]
rule = "net.listeners"
subject = "tcp/8081"
justification = "squid accelerator port, firewalled at the site edge"
expires = 2026-06-01
approved_by = "reviewer"

[[waiver]]
rule = "files.host-keys"
subject = "/etc/ssh/ssh_host_*_key"
justification = "keys regenerated at first boot"
expires = 2026-05-31
"#;
    let p = policy(waivers);
    let v = evaluate(&inv, &p, &ctx());
    let squid = v.findings.iter().find(|f| f.subject == "tcp/8081").unwrap();
    assert!(
        matches!(&squid.waiver, Some(WaiverState::Applied { expires, .. }) if expires == "2026-06-01"),
        "{:?}",
        squid.waiver
    );
    assert!(!squid.blocking);
    let key = v
        .findings
        .iter()
        .find(|f| f.subject == "/etc/ssh/ssh_host_rsa_key")
        .unwrap();
    assert!(
        matches!(&key.waiver, Some(WaiverState::Expired { expired, .. }) if expired == "2026-05-31"),
        "{:?}",
        key.waiver
    );
    assert!(key.blocking);
    assert_eq!(
        (v.totals.waived, v.totals.expired_waivers, v.totals.blocking),
        (1, 1, 7)
    );
    let text = vetter::report::terminal(&v, false);
    assert!(
        text.contains("[waiver EXPIRED 2026-05-31]")
            && text.contains("expired on 2026-05-31 and no longer applies"),
        "{text}"
    );
    // One day later the first waiver has expired too.
    let later = EvalContext::new(NOW + 86_400, "frontier-squid", Some("cms".into()));
    let v2 = evaluate(&inv, &p, &later);
    assert_eq!(
        (
            v2.totals.waived,
            v2.totals.expired_waivers,
            v2.totals.blocking
        ),
        (0, 2, 8)
    );
    // A wafer with only the waived problem passes.
    let only = evaluate(
        &inspect(&wafer(Plant {
            squid_port: true,
            ..Default::default()
        })),
        &p,
        &ctx(),
    );
    assert_eq!(only.outcome, Outcome::Pass);
    assert_eq!(
        only.rules
            .iter()
            .find(|r| r.id == "net.listeners")
            .unwrap()
            .status,
        "waived"
    );
}

#[test]
fn fail_on_threshold_and_scope() {
    let inv = inspect(&wafer(Plant {
        nopie_setuid: true,
        ..Default::default()
    }));
    let p = policy("");
    // elf.pie is medium: failing at medium, passing with --fail-on high.
    assert_eq!(evaluate(&inv, &p, &ctx()).outcome, Outcome::Fail);
    let mut c = ctx();
    c.fail_on = Some(Severity::High);
    let v = evaluate(&inv, &p, &c);
    assert_eq!(v.outcome, Outcome::Pass);
    assert_eq!(v.findings.len(), 1);
    assert!(!v.findings[0].blocking);
    assert_eq!(
        v.rules.iter().find(|r| r.id == "elf.pie").unwrap().status,
        "warn"
    );
    // A rule scoped to other VOs does not apply.
    let scoped = POLICY.replace("id = \"elf.pie\"", "id = \"elf.pie\"\nvos = [\"atlas\"]");
    let v = evaluate(
        &inv,
        &Policy::parse(&scoped, "p.toml", None).unwrap(),
        &ctx(),
    );
    assert_eq!(v.outcome, Outcome::Pass);
    assert_eq!(
        v.rules.iter().find(|r| r.id == "elf.pie").unwrap().status,
        "not-applicable"
    );
}

#[test]
fn since_marks_new_and_known_and_diff_sees_the_delta() {
    let old = inspect(&wafer(Plant {
        telnet: true,
        old_openssl: true,
        ..Default::default()
    }));
    let new = inspect(&wafer(Plant {
        telnet: true,
        squid_port: true,
        extra_setuid: true,
        ..Default::default()
    }));
    let mut c = ctx();
    c.since = Some(&old);
    let v = evaluate(&new, &policy(""), &c);
    let status: Vec<(String, Option<bool>)> = {
        let mut s: Vec<_> = v
            .findings
            .iter()
            .map(|f| (f.subject.clone(), f.new))
            .collect();
        s.sort();
        s
    };
    assert_eq!(
        status,
        vec![
            ("/usr/local/bin/rootme".into(), Some(true)),
            ("tcp/23".into(), Some(false)),
            ("tcp/8081".into(), Some(true))
        ]
    );
    assert_eq!((v.totals.new, v.totals.known), (2, 1));
    let d = vetter::diff::diff(&old, &new);
    assert_eq!(d.packages.len(), 1, "{:#?}", d.packages);
    assert_eq!(
        d.packages[0].change,
        vetter::diff::PackageChangeKind::Upgraded
    );
    assert_eq!(
        (d.packages[0].old.as_deref(), d.packages[0].new.as_deref()),
        (Some("0.9.8e-27.el5_10.1"), Some("0.9.8e-27.el5_10.4"))
    );
    assert_eq!(d.privileged.len(), 1);
    assert_eq!(
        (
            d.privileged[0].path.as_str(),
            d.privileged[0].change.as_str()
        ),
        ("/usr/local/bin/rootme", "added")
    );
    assert_eq!(
        d.ports
            .iter()
            .map(|p| (p.change.as_str(), p.port))
            .collect::<Vec<_>>(),
        vec![("opened", 8081)]
    );
    let changed: Vec<&str> = d.files.iter().map(|f| f.path.as_str()).collect();
    assert!(
        changed.contains(&"/etc/squid/squid.conf") && changed.contains(&"/usr/local/bin/rootme"),
        "{changed:?}"
    );
    assert!(
        vetter::diff::render(&d)
            .contains("upgraded   openssl.noarch 0.9.8e-27.el5_10.1 -> 0.9.8e-27.el5_10.4"),
        "{}",
        vetter::diff::render(&d)
    );
    // Downgrade is seen as such.
    let back = vetter::diff::diff(&new, &old);
    assert_eq!(
        back.packages[0].change,
        vetter::diff::PackageChangeKind::Downgraded
    );
    assert!(vetter::diff::diff(&old, &old).is_empty());
}

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata");

#[test]
fn sarif_validates_against_the_sarif_2_1_0_schema() {
    let inv = inspect(&wafer(ALL));
    let p = policy("[[waiver]]\nrule = \"net.listeners\"\nsubject = \"tcp/8081\"\njustification = \"ok\"\nexpires = 2030-01-01\n");
    let old = inspect(&wafer(Plant {
        telnet: true,
        ..Default::default()
    }));
    let mut c = ctx();
    c.since = Some(&old);
    let v = evaluate(&inv, &p, &c);
    let log = vetter::report::sarif(&v);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vet.sarif");
    std::fs::write(&path, serde_json::to_string_pretty(&log).unwrap()).unwrap();
    let validate = |p: &Path| {
        Command::new("python3")
            .arg(format!("{TESTDATA}/sarif-2.1.0-schema/validate.py"))
            .arg(p)
            .output()
            .expect("python3 (with python3-jsonschema) is needed to validate SARIF")
    };
    let out = validate(&path);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("VALID"));
    // Content: every rule, one result per finding with level, location and line.
    let run = &log["runs"][0];
    assert_eq!(
        run["tool"]["driver"]["rules"].as_array().unwrap().len(),
        p.rules().len()
    );
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 8);
    let squid = results
        .iter()
        .find(|r| r["properties"]["subject"] == "tcp/8081")
        .unwrap();
    assert_eq!(squid["level"], "error");
    assert_eq!(
        squid["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "etc/squid/squid.conf"
    );
    assert_eq!(
        squid["locations"][0]["physicalLocation"]["region"]["startLine"],
        2
    );
    assert_eq!(squid["suppressions"][0]["status"], "accepted");
    assert_eq!(squid["baselineState"], "new");
    let telnet = results
        .iter()
        .find(|r| r["properties"]["subject"] == "tcp/23")
        .unwrap();
    assert_eq!(telnet["baselineState"], "unchanged");
    let pie = results.iter().find(|r| r["ruleId"] == "elf.pie").unwrap();
    assert_eq!(pie["level"], "warning");
    // The validator does refuse a broken log.
    let mut bad = log.clone();
    bad["runs"][0]["results"][0]["level"] = serde_json::json!("fatal");
    std::fs::write(&path, serde_json::to_string(&bad).unwrap()).unwrap();
    assert!(!validate(&path).status.success());
}

#[test]
fn json_and_terminal_reports() {
    let v = evaluate(&inspect(&wafer(ALL)), &policy(""), &ctx());
    let j: serde_json::Value = serde_json::from_str(&vetter::report::json(&v)).unwrap();
    assert_eq!(j["schema"], "wafer-verdict/1");
    assert_eq!(j["outcome"], "fail");
    assert_eq!(j["findings"].as_array().unwrap().len(), 8);
    assert_eq!(j["totals"]["critical"], 2);
    let plain = vetter::report::terminal(&v, false);
    assert!(plain.starts_with("FAIL wafer frontier-squid"), "{plain}");
    let totals = plain.lines().nth(1).unwrap();
    assert!(
        totals.starts_with("totals: 2 critical, 5 high, 1 medium, 0 low, 0 info, 8 blocking"),
        "{totals}"
    );
    // Grouped by severity, most severe first.
    let (c, h, m) = (
        plain.find("\nCRITICAL (2)").unwrap(),
        plain.find("\nHIGH (5)").unwrap(),
        plain.find("\nMEDIUM (1)").unwrap(),
    );
    assert!(c < h && h < m);
    assert!(!plain.contains('\x1b'));
    let colour = vetter::report::terminal(&v, true);
    assert!(colour.contains("\x1b[1;31mFAIL"));
}

/// A headless Chromium from Debian renders the HTML report: the DOM holds the findings (and the
/// inline script ran), and a screenshot is written.
#[test]
fn html_report_renders_in_headless_chromium() {
    let mut t = wafer(ALL);
    // Hostile text from the image must be escaped.
    file(&mut t, "/etc/xinetd.d/evil", "service <script>alert(1)</script>\n{\n socket_type = stream\n port = 6666\n disable = no\n}\n");
    let inv = inspect(&t);
    let v = evaluate(&inv, &policy(""), &ctx());
    let html = vetter::report::html(&v, &inv);
    assert!(!html.contains("<script>alert(1)"), "unescaped image text");
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains(" src="),
        "no external resources"
    );
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium (Debian package chromium) is needed for the HTML report test");
    let common = |extra: &[String]| -> std::process::Output {
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.extend_from_slice(extra);
        args.push(format!("file://{}", page.display()));
        Command::new(chromium).args(&args).output().unwrap()
    };
    let dom = common(&["--dump-dom".to_string()]);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    for needle in [
        "FAIL — wafer frontier-squid",
        "telnet (xinetd) listens on tcp/23",
        "/etc/squid/squid.conf:2",
        "openssl 0.9.8e-27.el5_10.1 is older than the required openssl &gt;= 0.9.8e-27.el5_10.4",
        "account root has an empty password",
        "/etc/ssh/ssh_host_rsa_key",
        "/usr/local/bin/rootme",
        "/usr/sbin/userhelper (setuid) is not position-independent",
        "/usr/bin/openssl differs from what openssl-0.9.8e-27.el5_10.1",
        // Written by the inline script: it ran.
        "2 of 2 packages shown",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
    ] {
        assert!(dom.contains(needle), "rendered DOM lacks {needle:?}");
    }
    let shot = std::env::var_os("WAFER_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.path().join("report.png"));
    let out = common(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,2000".to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "screenshot of {} bytes",
        png.len()
    );
}

/// The clean wafer with its rpm database replaced by `packages` at /var/lib/rpm/Packages.
fn wafer_with_packages_file(packages: &[u8]) -> Tree {
    let mut t = wafer(Plant::default());
    t.remove(b"/var/lib/rpm/rpmdb.sqlite").unwrap();
    file_mode(&mut t, "/var/lib/rpm/Packages", packages, 0o644);
    t
}

#[test]
fn damaged_package_database_could_not_vet_unless_waived() {
    let garbage: Vec<u8> = (0..20_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let real = std::fs::read(format!("{TESTDATA}/rpmdb-bdb-go-rpmdb-libuuid/Packages")).unwrap();
    let truncated = &real[..real.len() / 3];
    for (what, bytes) in [("garbage", &garbage[..]), ("truncated", truncated)] {
        let inv = inspect(&wafer_with_packages_file(bytes));
        assert!(
            !inv.packages.damaged.is_empty(),
            "{what}: the reader reports the damage: {:?}",
            inv.packages
        );
        let v = evaluate(&inv, &policy(""), &ctx());
        assert_eq!(v.outcome, Outcome::CouldNotVet, "{what}");
        assert_eq!(v.exit_code(), 2);
        assert_eq!(exit_code::<()>(&Ok(v.clone())), 2);
        let u = &v.unvetted[0];
        assert!(u.path.starts_with("/var/lib/rpm"), "{what}: {u:?}");
        assert_eq!((u.source.as_str(), u.waived), ("package-database", false));
        let text = vetter::report::terminal(&v, false);
        assert!(text.starts_with("COULD NOT VET"), "{text}");
        assert!(
            text.contains(&format!(
                "NOT VETTED: {} (package-database) could not be read",
                u.path
            )),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&vetter::report::json(&v)).unwrap();
        assert_eq!(json["outcome"], "could-not-vet");
        assert_eq!(json["unvetted"][0]["path"], u.path.as_str());
        let sarif = vetter::report::sarif(&v);
        let inv0 = &sarif["runs"][0]["invocations"][0];
        assert_eq!(inv0["executionSuccessful"], false);
        assert!(inv0["toolExecutionNotifications"][0]["message"]["text"]
            .as_str()
            .unwrap()
            .contains(&u.path));

        // Waived (the directory covers the file below it): vetted normally; the packages rules
        // that need the database still cannot run and say so.
        let waived = policy("[waive]\ndamaged = [\"/var/lib/rpm\"]\n");
        let v = evaluate(&inv, &waived, &ctx());
        assert!(v.unvetted.iter().all(|u| u.waived), "{:?}", v.unvetted);
        assert_eq!(v.outcome, Outcome::Fail, "{what}");
        assert_eq!(
            keys(&v),
            vec![
                ("files.modified".to_string(), "package-database".to_string()),
                ("pkg.versions".to_string(), "package-database".to_string()),
                ("priv.allowlist".to_string(), "/usr/bin/passwd".to_string()),
            ],
            "{}",
            vetter::report::terminal(&v, false)
        );
        // A waiver for another source does not cover it.
        let other = policy("[waive]\ndamaged = [\"/var/lib/dpkg/status\"]\n");
        assert_eq!(evaluate(&inv, &other, &ctx()).outcome, Outcome::CouldNotVet);
    }
}

#[test]
fn reader_damage_could_not_vet_unless_waived() {
    let mut inv = inspect(&wafer(Plant::default()));
    assert_eq!(evaluate(&inv, &policy(""), &ctx()).outcome, Outcome::Pass);
    inv.add_reader_damage(
        "out/frontier/disk.img.zst",
        ["checksum mismatch: inode 12: inode checksum".to_string()],
    );
    let v = evaluate(&inv, &policy(""), &ctx());
    assert_eq!(v.outcome, Outcome::CouldNotVet);
    assert_eq!(v.unvetted[0].path, "out/frontier/disk.img.zst");
    assert_eq!(v.unvetted[0].source, "filesystem");
    let v = evaluate(
        &inv,
        &policy("[waive]\ndamaged = [\"filesystem\"]\n"),
        &ctx(),
    );
    assert_eq!(v.outcome, Outcome::Pass);
}

#[test]
fn empty_policy_is_refused_unless_allowed_and_kinds_checked_are_reported() {
    for text in [
        "",
        "[policy]\nname = \"nothing\"\n",
        "[policy]\nfail_on = \"low\"\n[waive]\ndamaged = [\"/x\"]\n",
    ] {
        let e = Policy::parse(text, "empty.toml", None).unwrap_err();
        let m = e.to_string();
        assert!(m.starts_with("empty.toml: the policy has no rules"), "{m}");
        assert!(m.contains("allow_empty = true"), "{m}");
    }
    let p = Policy::parse("[policy]\nallow_empty = true\n", "empty.toml", None).unwrap();
    let inv = inspect(&wafer(ALL));
    let v = evaluate(&inv, &p, &ctx());
    assert_eq!(v.outcome, Outcome::Pass);
    assert!(v.checked.is_empty());
    assert_eq!(
        v.not_checked,
        ["ports", "privileged", "packages", "files", "elf", "boot"]
    );
    assert!(vetter::report::terminal(&v, false)
        .contains("checked: none; not checked: ports, privileged, packages, files, elf, boot"));

    // Only a ports rule: ports checked; a rule scoped to another wafer does not count.
    let p = Policy::parse(
        "[[ports]]\nid = \"p\"\nseverity = \"high\"\n[[boot]]\nid = \"b\"\nseverity = \"low\"\nwafers = [\"other-*\"]\narch = [\"x86_64\"]\n",
        "p.toml",
        None,
    )
    .unwrap();
    let v = evaluate(&inv, &p, &ctx());
    assert_eq!(v.checked, ["ports"]);
    assert_eq!(
        v.not_checked,
        ["privileged", "packages", "files", "elf", "boot"]
    );
    let sarif = vetter::report::sarif(&v);
    assert_eq!(
        sarif["runs"][0]["invocations"][0]["properties"]["checkedKinds"],
        serde_json::json!(["ports"])
    );
    // A bad waive pattern is located.
    let e = Policy::parse(
        "[[ports]]\nid = \"p\"\nseverity = \"high\"\n[waive]\ndamaged = [\"/var/[lib\"]\n",
        "w.toml",
        None,
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("w.toml:5:"), "{e}");
}

#[test]
fn standard_world_writable_devices_are_not_findings_others_are() {
    use rootfs::{Device, Node, NodeKind};
    let mut t = wafer(Plant::default());
    let mut dev = |path: &str, kind: NodeKind| {
        t.insert(path.as_bytes(), Node::new(kind, meta(0o666)), &meta(0o755))
            .unwrap();
    };
    let c = |major, minor| NodeKind::CharDevice(Device { major, minor });
    dev("/dev/null", c(1, 3));
    dev("/dev/zero", c(1, 5));
    dev("/dev/urandom", c(1, 9));
    dev("/dev/tty", c(5, 0));
    dev("/dev/console", c(5, 1));
    dev("/dev/ptmx", c(5, 2));
    // Not standard: /dev/mem's numbers under an innocent name, a disk, a memory device.
    dev("/dev/full", c(1, 1));
    dev(
        "/dev/sda",
        NodeKind::BlockDevice(Device { major: 8, minor: 0 }),
    );
    dev("/dev/kmem", c(1, 2));
    let v = evaluate(&inspect(&t), &policy(""), &ctx());
    let ww: Vec<&str> = v
        .findings
        .iter()
        .filter(|f| f.rule == "files.world-writable")
        .map(|f| f.subject.as_str())
        .collect();
    assert_eq!(ww, ["/dev/full", "/dev/kmem", "/dev/sda"]);
}

#[test]
fn keys_shipped_by_a_package_are_low_and_name_it_stray_keys_keep_the_rule_severity() {
    let mut t = wafer(Plant::default());
    let key = include_bytes!("../../testdata/throwaway-private-keys/ed25519-pkcs8.pem");
    // /usr/bin/openssl belongs to the openssl package of the test database: a key there is the
    // package's. The same key in /root is stray. A header string alone is nothing.
    let mut packaged = OPENSSL_SCRIPT.as_bytes().to_vec();
    packaged.extend_from_slice(key);
    file_mode(&mut t, "/root/stray.pem", key, 0o600);
    file_mode(
        &mut t,
        "/usr/local/bin/tool",
        b"\x7fELF....-----BEGIN OPENSSH PRIVATE KEY-----\0-----END OPENSSH PRIVATE KEY-----\0",
        0o755,
    );
    let inv = inspect(&t);
    let creds: Vec<(&str, &str)> = inv
        .credentials
        .iter()
        .map(|c| (c.path.as_str(), c.kind.as_str()))
        .collect();
    assert_eq!(creds, [("/root/stray.pem", "pem-private-key:PKCS8")]);
    let v = evaluate(&inv, &policy(""), &ctx());
    let f = v
        .findings
        .iter()
        .find(|f| f.subject == "/root/stray.pem")
        .unwrap();
    assert_eq!((f.severity, f.blocking), (Severity::Critical, true));

    // The key inside the packaged (and so modified) /usr/bin/openssl keeps the rule's severity;
    // the ownership lowers the severity only for a file as the package shipped it.
    let mut t2 = wafer(Plant::default());
    file_mode(&mut t2, "/usr/bin/openssl", &packaged, 0o755);
    let inv2 = inspect(&t2);
    assert_eq!(
        inv2.packages
            .owners
            .get("/usr/bin/openssl")
            .map(Vec::as_slice),
        Some(&["openssl".to_string()][..])
    );
    let v = evaluate(&inv2, &policy(""), &ctx());
    let f = v
        .findings
        .iter()
        .find(|f| f.rule == "files.host-keys" && f.subject == "/usr/bin/openssl")
        .unwrap();
    assert_eq!(f.severity, Severity::Critical, "{}", f.message);
}
