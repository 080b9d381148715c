#![no_main]
//! Policy parsing, advisory lists and evaluation: the input is split on 0xff bytes into a policy
//! text, a CSV advisory list, a JSON advisory list and a squid configuration. A policy that parses
//! is evaluated against a small image (with the squid configuration, a key file and an rpm
//! `Packages` file from the fifth and sixth pieces, and a few planted problems), and every
//! report is rendered, could-not-vet verdicts included.
use libfuzzer_sys::fuzz_target;
use rootfs::{Content, Metadata, Node, NodeKind, Timestamp, Tree};

fn meta(perm: u16) -> Metadata {
    Metadata::new(perm, 0, 0, Timestamp::from_secs(1_000_000))
}

fn file(t: &mut Tree, path: &str, bytes: &[u8], perm: u16) {
    let _ = t.insert(path.as_bytes(), Node::new(NodeKind::Regular(Content::from_bytes(bytes.to_vec())), meta(perm)), &meta(0o755));
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0xff);
    let policy = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let csv = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let json = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let squid = parts.next().unwrap_or_default().to_vec();
    let key = parts.next().unwrap_or_default().to_vec();
    let packages = parts.next().map(<[u8]>::to_vec);
    let _ = vetter::policy::advisory::parse_csv(&csv, "fuzz.csv");
    let _ = vetter::policy::advisory::parse_json(&json, "fuzz.json");
    let Ok(p) = vetter::policy::Policy::parse(&policy, "fuzz.toml", None) else { return };
    let mut t = Tree::new(meta(0o755));
    file(&mut t, "/etc/passwd", b"root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/:/bin/sh\n", 0o644);
    file(&mut t, "/etc/shadow", b"root::1:0:99999:7:::\n", 0o600);
    file(&mut t, "/etc/inittab", b"id:3:initdefault:\n", 0o644);
    file(&mut t, "/sbin/init", b"\x7fELF", 0o755);
    file(&mut t, "/etc/rc.d/init.d/squid", b"#!/bin/sh\n", 0o755);
    let _ = t.insert(b"/etc/rc.d/rc3.d/S10squid", Node::new(NodeKind::Symlink(b"../init.d/squid".to_vec()), meta(0o777)), &meta(0o755));
    file(&mut t, "/etc/squid/squid.conf", &squid, 0o644);
    file(&mut t, "/usr/bin/su", b"#!/bin/sh\n", 0o4755);
    file(&mut t, "/var/tmp/x", b"", 0o666);
    file(&mut t, "/root/key.pem", &key, 0o600);
    if let Some(db) = &packages {
        file(&mut t, "/var/lib/rpm/Packages", db, 0o644);
    }
    let Ok(mut inv) = vetter::inspect(&t, &vetter::InspectOptions::default()) else { return };
    if key.first().is_some_and(|b| b & 1 == 1) {
        inv.add_reader_damage("fuzz.img", ["checksum mismatch: fuzz".to_string()]);
    }
    let mut ctx = vetter::policy::EvalContext::new(1_780_272_000, "frontier-squid", Some("cms".into()));
    ctx.since = Some(&inv);
    let v = vetter::policy::evaluate(&inv, &p, &ctx);
    let _ = vetter::report::terminal(&v, true);
    let _ = vetter::report::json(&v);
    let _ = vetter::report::sarif(&v);
    let _ = vetter::report::html(&v, &inv);
});
