//! dpkg status files against the real `dpkg-query --admindir DIR -W`: every state dpkg knows,
//! and a seeded corruption sweep (truncations, byte flips) of a real status file, where each
//! result must be exactly dpkg-query's package list or an error naming the file.
mod common;
use common::*;
use std::process::Command;

const FORMAT: &str = "${Package} ${Architecture} ${Version} ${db:Status-Abbrev}\\n";

/// dpkg-query's list for a status file, or `Err(stderr)` when it refuses the file.
fn dpkg_query(status: &[u8]) -> Result<Vec<String>, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("updates")).unwrap();
    std::fs::create_dir(dir.path().join("info")).unwrap();
    std::fs::write(dir.path().join("status"), status).unwrap();
    let out = Command::new("dpkg-query")
        .arg("--admindir")
        .arg(dir.path())
        .args(["-W", "-f", FORMAT])
        .output()
        .expect("run dpkg-query (Debian package dpkg)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    Ok(v)
}

/// Our list in dpkg-query's format (listed packages only).
fn ours(status: &[u8]) -> Result<Vec<String>, pkgdb::dpkg::DpkgError> {
    let mut v: Vec<String> = pkgdb::dpkg::parse_status_bytes(status, "status")?
        .into_iter()
        .filter(|p| p.is_listed())
        .map(|p| {
            format!(
                "{} {} {} {}",
                p.name,
                p.arch.unwrap_or_default(),
                p.version,
                p.state.abbrev()
            )
        })
        .collect();
    v.sort();
    Ok(v)
}

fn stanza(name: &str, status: &str, extra: &str) -> String {
    format!(
        "Package: {name}\nStatus: {status}\nPriority: optional\nSection: misc\nMaintainer: M <m@example.org>\nArchitecture: amd64\nVersion: 1:2.0-3\n{extra}Description: test\n more\n .\n text\n\n"
    )
}

#[test]
fn every_state_agrees_with_dpkg_query() {
    let mut s = String::new();
    s += &stanza("inst", "install ok installed", "");
    s += &stanza("held", "hold ok installed", "");
    s += &stanza("deinst", "deinstall ok installed", "");
    s += &stanza("purged-but-there", "purge ok installed", "");
    s += &stanza("half-inst", "install reinstreq half-installed", "");
    s += &stanza("unpacked", "install ok unpacked", "");
    s += &stanza(
        "half-conf",
        "install ok half-configured",
        "Config-Version: 1:1.0-1\n",
    );
    s += &stanza(
        "trig-aw",
        "install ok triggers-awaited",
        "Triggers-Awaited: inst\nTriggers-Pending: ldconfig\n",
    );
    s += &stanza(
        "trig-pend",
        "install ok triggers-pending",
        "Triggers-Pending: ldconfig /usr/share/man\n",
    );
    s += &stanza(
        "removed",
        "deinstall ok config-files",
        "Config-Version: 1:2.0-3\nConffiles:\n /etc/removed.conf 0123456789abcdef0123456789abcdef\n",
    );
    s += &stanza("gone", "purge ok not-installed", "");
    s += "Package: selected\nStatus: install ok not-installed\n\n";
    s += &stanza("UPPER", "Hold OK Installed", "");
    s += "Package: zero-epoch\nStatus: install ok installed\nMaintainer: m\nArchitecture: all\nVersion: 0:1.0\nDescription: d\n";
    let want = dpkg_query(s.as_bytes()).expect("dpkg-query accepts it");
    let got = ours(s.as_bytes()).unwrap();
    assert_eq!(got, want);
    // Every listed state is there, with its words.
    assert_eq!(got.len(), 12, "{got:#?}");
    let pkgs = pkgdb::dpkg::parse_status(&s, "status").unwrap();
    let by = |n: &str| pkgs.iter().find(|p| p.name == n).unwrap();
    assert_eq!(by("held").status, "hold ok installed");
    assert_eq!(by("half-inst").state.abbrev(), "iHR");
    assert!(by("deinst").is_installed() && by("held").is_installed());
    assert!(!by("removed").is_installed() && by("removed").is_listed());
    assert!(!by("gone").is_listed());
    assert_eq!(by("removed").conffiles[0].path, "/etc/removed.conf");
}

#[test]
fn refusals_agree_with_dpkg_query() {
    let ok = stanza("a", "install ok installed", "");
    let cases: Vec<String> = vec![
        ok.trim_end().to_string(),                          // no final newline
        format!("{ok}Package: b\nStatus: install ok inst"), // cut mid-field
        format!("{ok}Package: b\nStatus"),                  // cut mid-name
        format!("{ok}garbage line\n"),                      // no colon
        format!("{ok}{ok}"),                                // the same package twice
        stanza("a", "install ok installed", "Depends: b (>= 1\n"), // unterminated version
        stanza("a", "install ok installed", "Depends: b:$$\n"), // bad arch qualifier
        stanza("a", "install ok installed", "Breaks: b | c\n"), // alternatives in Breaks
        stanza("a", "install ok installed", "Conffiles: /etc/x abc\n"),
        stanza("a", "install ok installed", "Conffiles:\n /etc/x\n"),
        stanza("a", "install ok installed", "Triggers-Pending: x\n"),
        stanza("a", "install ok triggers-pending", ""),
        stanza("a", "install ok installed", "Config-Version: 1\n"),
        stanza("a", "install ok installed", "Essential: maybe\n"),
        stanza("a", "install ok installed", "Multi-Arch: sometimes\n"),
        stanza("a", "install ok installed", "Filename: pool/a.deb\n"),
        stanza("a", "install ok installed", "X: too short\n"),
        stanza("a", "install ok installed", "Version: 2\n"),
        stanza("a@b", "install ok installed", ""),
        stanza("a", "install ok installed trailing", ""),
        stanza("a", "install hold installed", ""),
        stanza("a", "install ok installed", "Multi-Arch: same\n").replace("amd64", "all"),
        "Package: a\nStatus: install ok installed\nVersion: 1:\n".into(),
        "Package: a\nStatus: install ok installed\nVersion: 1.0-\n".into(),
        "Package: a\nStatus: install ok installed\nVersion: 1 2\n".into(),
        "Package: a\nStatus: install ok installed\nVersion: x1:2\n".into(),
        "Package: a\nStatus: install ok installed\n".into(),
        "Status: install ok installed\nVersion: 1\n".into(),
        "-Package: a\n".into(),
    ];
    for c in &cases {
        let d = dpkg_query(c.as_bytes());
        assert!(d.is_err(), "dpkg-query accepted {c:?}: {d:?}");
        let e = ours(c.as_bytes()).expect_err(c);
        assert!(e.to_string().starts_with("status line "), "{e}");
    }
    // Quirks dpkg accepts: lax versions and architectures, a blank continuation line, a lone
    // last byte, prefix-matched status words, case.
    let accepted: Vec<String> = vec![
        stanza("a", "install ok installed", "Foo: x\n  \n y\n"),
        format!("{ok}X"),
        stanza("a", "install okinstalled", ""),
        "Package: a\nStatus: install ok installed\nVersion: abc$\n".into(),
        "Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: a$b\n".into(),
        "Package: a\nStatus: install ok installed\nVersion: +01:1-0\n".into(),
        stanza(
            "a",
            "install ok installed",
            "Depends: b (> 1), c (<2) | d:any\n",
        ),
        stanza(
            "a",
            "install ok installed",
            "Conffiles:\n /etc/x abc obsolete\n /etc/y z remove-on-upgrade\n",
        ),
        stanza("a", "install ok installed", "").replace("amd64", "i386")
            + &stanza("a", "purge ok not-installed", ""),
    ];
    for c in &accepted {
        let want = dpkg_query(c.as_bytes()).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        assert_eq!(ours(c.as_bytes()).unwrap(), want, "{c:?}");
    }
}

fn real_status() -> Vec<u8> {
    std::fs::read(testdata("dpkg-status-debian-bookworm/status")).unwrap()
}

/// Ours errs where dpkg-query accepts only for the documented stricter cases.
fn stricter(e: &pkgdb::dpkg::DpkgError) -> bool {
    let s = e.to_string();
    s.contains("NUL byte") || s.contains("not UTF-8") || s.contains("appears twice")
}

fn check(data: &[u8], what: &str, agree: &mut usize, refused: &mut usize) {
    let want = dpkg_query(data);
    match ours(data) {
        Ok(got) => {
            let want =
                want.unwrap_or_else(|e| panic!("{what}: we read it, dpkg-query refuses: {e}"));
            assert_eq!(got, want, "{what}");
            *agree += 1;
        }
        Err(e) => {
            assert!(e.to_string().starts_with("status line "), "{what}: {e}");
            if want.is_ok() {
                assert!(stricter(&e), "{what}: dpkg-query accepts, we refuse: {e}");
            }
            *refused += 1;
        }
    }
}

#[test]
fn real_status_agrees_with_dpkg_query() {
    let data = real_status();
    let want = dpkg_query(&data).unwrap();
    assert_eq!(want.len(), 30);
    assert_eq!(ours(&data).unwrap(), want);
}

#[test]
fn truncation_sweep_never_loses_packages_silently() {
    let data = real_status();
    let (mut agree, mut refused) = (0, 0);
    let mut rng = Rng(0x5eed_d9c6);
    let mut cuts: Vec<usize> = (0..150)
        .map(|_| rng.below(data.len() as u64) as usize)
        .collect();
    // Every offset around a stanza boundary and a field boundary.
    let b = data.windows(2).position(|w| w == b"\n\n").unwrap();
    cuts.extend(b.saturating_sub(3)..b + 5);
    let f = data.iter().position(|&c| c == b':').unwrap();
    cuts.extend(f.saturating_sub(3)..f + 3);
    for cut in cuts {
        check(
            &data[..cut],
            &format!("cut at {cut}"),
            &mut agree,
            &mut refused,
        );
    }
    eprintln!("truncations: {agree} agree with dpkg-query, {refused} refused");
    // A cut exactly at a stanza end is a valid, shorter file; all other cuts are refused.
    assert!(refused > 100, "agree {agree}, refused {refused}");
}

#[test]
fn byte_flip_sweep_agrees_or_refuses() {
    let data = real_status();
    let (mut agree, mut refused) = (0, 0);
    let mut rng = Rng(0xf11b);
    for round in 0..250 {
        let mut d = data.clone();
        let mut at = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(d.len() as u64) as usize;
            d[i] = *rng.pick(&[
                b'\n', b' ', b':', b'(', b',', b'|', 0xff, b'x', b'-', 0x1a, b'\t', b'Z',
            ]);
            at.push(i);
        }
        check(
            &d,
            &format!("round {round} flips at {at:?}"),
            &mut agree,
            &mut refused,
        );
    }
    eprintln!("byte flips: {agree} agree with dpkg-query, {refused} refused");
    assert!(
        agree > 20 && refused > 20,
        "agree {agree}, refused {refused}"
    );
}

/// The host's own status file (hundreds of packages), cut and flipped at seeded offsets.
#[test]
fn host_status_sweep_agrees_or_refuses() {
    let data = std::fs::read("/var/lib/dpkg/status").expect("the host's dpkg status");
    let (mut agree, mut refused) = (0, 0);
    check(&data, "host status", &mut agree, &mut refused);
    assert_eq!(
        (agree, refused),
        (1, 0),
        "the host's own status file is read"
    );
    let mut rng = Rng(0x4057);
    for i in 0..20 {
        let cut = rng.below(data.len() as u64) as usize;
        check(
            &data[..cut],
            &format!("host cut {i} at {cut}"),
            &mut agree,
            &mut refused,
        );
        let mut d = data.clone();
        let at = rng.below(d.len() as u64) as usize;
        d[at] = *rng.pick(&[b'\n', b' ', b':', b'(', b'|', b'x', 0x1a]);
        check(
            &d,
            &format!("host flip {i} at {at}"),
            &mut agree,
            &mut refused,
        );
    }
    eprintln!("host status: {agree} agree with dpkg-query, {refused} refused");
}
