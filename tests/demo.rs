//! End to end: `wafer demo DIR` in a clean folder, every stage checked from the files it left,
//! with the real tools as oracles: rpm (Berkeley DB read-only backend) on the base's database,
//! e2fsck on the base image, fsck.fat on the CIDATA disk, and `wafer verify` again from the CLI.
//!
//! Debian packages: rpm, e2fsprogs, dosfstools.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use serde_json::Value;

const WAFER: &str = env!("CARGO_BIN_EXE_wafer");

/// `wafer demo` as on a machine without Xen: its deploy is a dry run, and a build machine with
/// xen-utils installed (for the xl-dry-run tests) but no hypervisor would fail `xl list`.
fn demo() -> Command {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|d| !d.join("xl").exists())
        .collect();
    let mut c = Command::new(WAFER);
    c.env("PATH", std::env::join_paths(dirs).expect("PATH entries"))
        .arg("demo");
    c
}

fn run(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    cmd.output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e} (is the tool installed?)"))
}

fn ok(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (rule, subject) of the findings no valid waiver covers.
fn counted_findings(verdict: &Value) -> BTreeSet<(String, String)> {
    verdict["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .filter(|f| f["waiver"]["state"].as_str() != Some("applied"))
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_string(),
                f["subject"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn single_file(dir: &Path, prefix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{}: expected one {prefix}* file, found {found:?}",
        dir.display()
    );
    found.into_iter().next().unwrap_or_default()
}

#[test]
fn demo_runs_every_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wafer-demo");
    let stdout = ok(demo().arg(&dir));

    // One line per stage, numbered.
    for n in 1..=7 {
        assert!(
            stdout.contains(&format!("[{n}/7] ")),
            "stage {n} line missing:\n{stdout}"
        );
    }

    // 1. The base: a clean ext3 image whose rpm database the real rpm reads.
    let base = dir.join("recipe/centos5-demo-base.img");
    ok(Command::new("e2fsck").args(["-fn"]).arg(&base));
    let db = tmp.path().join("rpmdb");
    std::fs::create_dir_all(&db).unwrap();
    ok(Command::new("debugfs")
        .arg("-R")
        .arg(format!(
            "dump /var/lib/rpm/Packages {}",
            db.join("Packages").display()
        ))
        .arg(&base));
    let qa = ok(Command::new("rpm").arg("--dbpath").arg(&db).args([
        "--define",
        "_db_backend bdb_ro",
        "-qa",
        "--qf",
        "%{NAME}-%{VERSION}-%{RELEASE}:[%{FILENAMES},]\\n",
    ]));
    let pkgs: BTreeSet<&str> = qa.lines().filter_map(|l| l.split(':').next()).collect();
    for want in [
        "openssl-0.9.8e-7.el5",
        "squid-2.6.STABLE21-3.el5",
        "openssh-server-4.3p2-82.el5",
        "bash-3.2-33.el5_11.4",
    ] {
        assert!(pkgs.contains(want), "rpm -qa lacks {want}: {qa}");
    }
    assert!(qa.contains("squid-2.6.STABLE21-3.el5:/etc/rc.d/init.d/squid,/etc/squid/squid.conf,/usr/sbin/squid,"), "{qa}");
    // The packaged files' digests are those of the files in the image.
    let squid = tmp.path().join("squid-bin");
    ok(Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump /usr/sbin/squid {}", squid.display()))
        .arg(&base));
    let digests = ok(Command::new("rpm").arg("--dbpath").arg(&db).args([
        "--define",
        "_db_backend bdb_ro",
        "-qa",
        "--qf",
        "[%{FILENAMES} %{FILEDIGESTS}\\n]",
    ]));
    let sha = ok(Command::new("sha256sum").arg(&squid));
    let sha = sha.split_whitespace().next().unwrap_or_default();
    assert!(
        digests.contains(&format!("/usr/sbin/squid {sha}")),
        "{digests}"
    );

    // 2-3. The planted wafer fails with exactly the four planted findings.
    let planted = json(&dir.join("reports/vet-planted.json"));
    assert_eq!(planted["outcome"], "fail");
    let want: BTreeSet<(String, String)> = [
        ("pkg.versions", "openssl"),
        ("net.listeners", "tcp/8080"),
        ("priv.allowlist", "/usr/local/bin/helper"),
        ("files.host-keys", "/etc/ssh/ssh_host_rsa_key"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(counted_findings(&planted), want);
    let port = planted["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["subject"] == "tcp/8080")
        .unwrap();
    let ev = &port["evidence"][0];
    assert_eq!(ev["file"], "/etc/squid/squid.conf");
    assert_eq!(ev["line"], 2);
    assert_eq!(ev["text"], "http_port 8080");

    // 4. The fixed wafer passes, none of those findings left.
    let fixed_v = json(&dir.join("reports/vet-fixed.json"));
    assert_eq!(fixed_v["outcome"], "pass");
    assert!(counted_findings(&fixed_v).is_empty(), "{fixed_v}");
    // Not even waived ones: wafer's own first-boot hook is a known port-less service.
    assert_eq!(
        fixed_v["findings"].as_array().map(Vec::len),
        Some(0),
        "{fixed_v}"
    );

    // 5. The approval: a DSSE envelope of an in-toto statement with a PASSED SLSA VSA, signed
    // by the reviewer key in the trust store; the CLI verifies the bundle.
    let fixed = dir.join("wafers/squid-fixed");
    let env = json(&single_file(&fixed.join("attestations"), "approval-"));
    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    let st: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        st["predicateType"],
        "https://slsa.dev/verification_summary/v1"
    );
    assert_eq!(st["predicate"]["verificationResult"], "PASSED");
    let keyid = ok(Command::new(WAFER)
        .args(["key", "id"])
        .arg(dir.join("keys/demo-reviewer.pub")));
    assert_eq!(
        env["signatures"][0]["keyid"].as_str().unwrap(),
        keyid.trim()
    );
    assert!(dir.join("trust/trust.toml").is_file());
    ok(Command::new(WAFER)
        .arg("verify")
        .arg(&fixed)
        .arg("--trust")
        .arg(dir.join("trust")));

    // 6. The tampered copy is refused, by the demo and by `wafer verify`.
    let tampered = dir.join("wafers/squid-fixed-tampered");
    let a = std::fs::read(fixed.join("disk.img.zst")).unwrap();
    let b = std::fs::read(tampered.join("disk.img.zst")).unwrap();
    assert_eq!(a.len(), b.len());
    let diff: u32 = a.iter().zip(&b).map(|(x, y)| (x ^ y).count_ones()).sum();
    assert_eq!(diff, 1, "exactly one bit flipped");
    let out = run(Command::new(WAFER)
        .arg("verify")
        .arg(&tampered)
        .arg("--trust")
        .arg(dir.join("trust")));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL"));
    assert!(stdout.contains("REFUSED"), "{stdout}");

    // 7. The dry-run deployment under DIR/site: xl.cfg, CIDATA, kernel, disk, lease records.
    let storage = dir.join("site/storage/cms-demo-frontier-squid");
    let xl = std::fs::read_to_string(storage.join("xl.cfg")).unwrap();
    assert!(xl.contains("name = \"cms-demo-frontier-squid\""), "{xl}");
    assert!(xl.contains("type = \"pv\""), "{xl}");
    assert!(
        xl.contains(&format!(
            "kernel = \"{}\"",
            storage.join("kernel").display()
        )),
        "{xl}"
    );
    assert!(xl.contains("bridge=xenbr0"), "{xl}");
    assert!(
        stdout.contains(&format!("xl create {}", storage.join("xl.cfg").display())),
        "{stdout}"
    );
    let kernel = std::fs::read(storage.join("kernel")).unwrap();
    assert!(String::from_utf8_lossy(&kernel).contains("2.6.18 kernel-xen"));
    let cidata = storage.join("cidata.img");
    ok(Command::new("fsck.fat").arg("-n").arg(&cidata));
    assert!(stdout.contains("label CIDATA"), "{stdout}");
    assert!(
        stdout.contains("local-hostname: cms-demo-frontier-squid"),
        "{stdout}"
    );
    let lease = json(&dir.join("site/state/leases/public/192.0.2.100.json"));
    assert!(
        lease.to_string().contains("cms-demo-frontier-squid"),
        "{lease}"
    );
    assert!(dir
        .join("site/state/deployments/cms-demo-frontier-squid.json")
        .is_file());
    let disk = std::fs::metadata(storage.join("disk.img")).unwrap();
    assert!(disk.len() > 0);

    // A non-empty DIR is refused without --force; with --force the demo runs again and
    // regenerates the same base bytes.
    let out = run(demo().arg(&dir));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    let before = std::fs::read(&base).unwrap();
    ok(demo().arg(&dir).arg("--force"));
    assert_eq!(
        std::fs::read(&base).unwrap(),
        before,
        "the base is deterministic"
    );
}
