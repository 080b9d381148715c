//! `wafer build`, `wafer mkfs` and `wafer approve` interrupted (SIGINT) or killed (SIGKILL) at
//! stepped points of their run: afterwards no file under a final name is partial (the output is
//! either absent, byte for byte what an undisturbed run writes, or, with `--force` over an
//! existing output, byte for byte the old one); an interrupted run prints one line saying what it
//! abandoned, exits 130 and leaves no temporary behind. The outputs are reproducible, so an
//! undisturbed run of the same command is the oracle for "complete".

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Deterministic incompressible bytes (splitmix64), so compressing and hashing take a while.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        v.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A base with 16 MiB of noise and a few hundred small files.
fn big_fixture() -> Fixture {
    Fixture::new(|root| {
        put(root, "srv/data/noise.bin", &noise(16 << 20, 7));
        for i in 0..400 {
            put(
                root,
                &format!("usr/share/doc/pkg{}/file{i}.txt", i % 20),
                format!("file {i}\n").repeat(i % 50 + 1).as_bytes(),
            );
        }
    })
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args(args)
        .env_remove("WAFER_PASSPHRASE")
        .env("SOURCE_DATE_EPOCH", "1500000000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wafer")
}

/// Runs `args`, sending `signal` ("INT" or "KILL") after `ms` milliseconds if it still runs.
/// Returns the output and whether the signal was sent.
fn run_and_signal(args: &[&str], ms: u64, signal: &str) -> (Output, bool) {
    let mut child = spawn(args);
    let deadline = Instant::now() + Duration::from_millis(ms);
    let mut sent = false;
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() >= deadline {
            sent = if signal == "KILL" {
                child.kill().is_ok()
            } else {
                Command::new("kill")
                    .arg(format!("-{signal}"))
                    .arg(child.id().to_string())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
            };
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("wafer {args:?} did not end within 120 s of {signal}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (child.wait_with_output().expect("output"), sent)
}

/// Every file below `p` (or `p` itself) with its sha256, by relative path.
fn digests(p: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    fn walk(base: &Path, d: &Path, m: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(d).expect("read_dir").flatten() {
            let p = e.path();
            if e.file_type().expect("type").is_dir() {
                walk(base, &p, m);
            } else {
                let rel = p.strip_prefix(base).expect("prefix").display().to_string();
                m.insert(rel, sha256_hex(&p));
            }
        }
    }
    if p.is_dir() {
        walk(p, p, &mut m);
    } else if p.exists() {
        m.insert(String::new(), sha256_hex(p));
    }
    m
}

/// Temporaries (`.NAME.wafer-tmp-...`, `.NAME.tmp-...`) left in `dir` and below.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    fn walk(d: &Path, v: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && (name.contains(".wafer-tmp-") || name.contains(".tmp-")) {
                v.push(e.path());
            } else if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(&e.path(), v);
            }
        }
    }
    walk(dir, &mut v);
    v
}

fn remove_temporaries(dir: &Path) {
    for t in temporaries(dir) {
        if t.is_dir() {
            let _ = std::fs::remove_dir_all(&t);
        } else {
            let _ = std::fs::remove_file(&t);
        }
    }
}

/// What one interrupted run did, for the summary assertions.
#[derive(Default, Debug)]
struct Tally {
    interrupted_mid_write: usize,
    killed: usize,
    completed: usize,
}

/// Checks one run's outcome. `old` is what the output held before (empty map: nothing);
/// `new` what an undisturbed run writes.
fn check_outcome(
    what: &str,
    o: &Output,
    signal: &str,
    output: &Path,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    tally: &mut Tally,
) {
    let err = stderr(o);
    assert!(!err.contains("panicked"), "{what}: {err}");
    let now = digests(output);
    assert!(
        now == *new || now == *old,
        "{what}: {} holds neither the old output nor a complete new one:\n{now:#?}\nstderr: {err}",
        output.display()
    );
    match o.status.code() {
        Some(0) => tally.completed += 1,
        Some(130) => {
            assert_eq!(signal, "INT", "{what}");
            let lines: Vec<&str> = err.lines().collect();
            assert_eq!(lines.len(), 1, "{what}: one line on SIGINT, got {err:?}");
            assert!(
                lines[0].starts_with("wafer: interrupted (SIGINT); "),
                "{what}: {err}"
            );
            if lines[0].contains("removed partial output") {
                assert!(
                    lines[0].contains(&output.display().to_string()),
                    "{what}: the line names the abandoned output: {err}"
                );
                tally.interrupted_mid_write += 1;
            }
            let parent = output.parent().expect("parent");
            let left = temporaries(parent);
            assert!(left.is_empty(), "{what}: SIGINT left {left:?}");
        }
        // Killed (SIGKILL, or a SIGINT before the handler was installed at the very start).
        None => tally.killed += 1,
        Some(c) => panic!("{what}: exit {c}: {err}"),
    }
}

/// Time of an undisturbed run, in milliseconds: the faster of two (the first may pay for a
/// cold cache), the output of the last one kept. `args` ends with the output path; the first
/// run writes to that path plus `.warm` beside it.
fn timed(args: &[&str]) -> u64 {
    let (out, rest) = args.split_last().expect("an output");
    let warm = format!("{out}.warm");
    let mut first: Vec<&str> = rest.to_vec();
    first.push(&warm);
    let t = Instant::now();
    ok(wafer(&first));
    let a = t.elapsed().as_millis() as u64;
    let t = Instant::now();
    ok(wafer(args));
    a.min(t.elapsed().as_millis() as u64)
}

/// The stepped kill points: fractions of a full run, alternating SIGINT and SIGKILL.
fn points(full_ms: u64, n: u64) -> Vec<(u64, &'static str)> {
    (1..=n)
        .map(|k| {
            (
                full_ms * k / (n + 1),
                if k % 2 == 1 { "INT" } else { "KILL" },
            )
        })
        .collect()
}

#[test]
fn build_interrupted_or_killed_leaves_no_partial_bundle() {
    let f = big_fixture();
    let recipe = f.recipe(
        "[[step]]\ntype = \"copy\"\nsrc = \"files/squid.conf\"\ndest = \"/etc/squid/squid.conf\"\n",
    );
    let reference = f.path("reference");
    let full = timed(&["build", s(&recipe), "-o", s(&reference)]);
    assert_eq!(
        digests(&reference),
        digests(&f.path("reference.warm")),
        "not reproducible"
    );
    let new = digests(&reference);
    assert!(new.contains_key("disk.img.zst"), "{new:?}");
    // An older bundle to replace with --force: another version of the wafer.
    let old_recipe = f.recipe_named("old.toml", "cms-squid", "0.9", "");
    let old_bundle = f.path("old");
    ok(wafer(&["build", s(&old_recipe), "-o", s(&old_bundle)]));
    let old = digests(&old_bundle);
    assert_ne!(old, new);

    let out_dir = f.path("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut tally = Tally::default();
    for (i, (ms, sig)) in points(full, 6).into_iter().enumerate() {
        let out = out_dir.join(format!("b{i}"));
        let replacing = i % 3 == 2;
        let before = if replacing {
            copy_dir(&old_bundle, &out);
            old.clone()
        } else {
            BTreeMap::new()
        };
        let mut args = vec!["build", s(&recipe), "-o", s(&out)];
        if replacing {
            args.push("--force");
        }
        let (o, _) = run_and_signal(&args, ms, sig);
        check_outcome(
            &format!("build {sig} at {ms} ms of {full}"),
            &o,
            sig,
            &out,
            &before,
            &new,
            &mut tally,
        );
        // SIGKILL leaves hidden temporaries; never a visible partial bundle.
        remove_temporaries(&out_dir);
    }
    eprintln!("build: {tally:?}");
    assert!(
        tally.interrupted_mid_write >= 1,
        "no SIGINT landed while the bundle was being written: {tally:?}"
    );

    // Without --force an existing bundle is refused with the way out, and left alone.
    let o = wafer(&["build", s(&recipe), "-o", s(&old_bundle)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("exists and is not empty; use --force to replace it"),
        "{}",
        stderr(&o)
    );
    assert_eq!(digests(&old_bundle), old);
    // With it, the bundle is replaced whole.
    ok(wafer(&[
        "build",
        s(&recipe),
        "-o",
        s(&old_bundle),
        "--force",
    ]));
    assert_eq!(digests(&old_bundle), new);
    assert!(temporaries(f.tmp.path()).is_empty());
}

#[test]
fn mkfs_interrupted_or_killed_leaves_no_partial_image_and_keeps_the_old_one() {
    let f = big_fixture();
    let tar = f.dir.join("base.tar");
    let reference = f.path("reference.img");
    let full = timed(&[
        "mkfs",
        s(&tar),
        "--epoch",
        "1700000000",
        "-o",
        s(&reference),
    ]);
    let new = digests(&reference);
    let old_img = f.path("old.img");
    ok(wafer(&[
        "mkfs",
        s(&tar),
        "-o",
        s(&old_img),
        "--epoch",
        "1600000000",
    ]));
    let old = digests(&old_img);
    assert_ne!(old, new);

    let out_dir = f.path("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut tally = Tally::default();
    for (i, (ms, sig)) in points(full, 6).into_iter().enumerate() {
        let out = out_dir.join(format!("x{i}.img"));
        let replacing = i % 2 == 0;
        let before = if replacing {
            std::fs::copy(&old_img, &out).unwrap();
            old.clone()
        } else {
            BTreeMap::new()
        };
        let mut args = vec!["mkfs", s(&tar), "-o", s(&out), "--epoch", "1700000000"];
        if replacing {
            args.push("--force");
        }
        let (o, _) = run_and_signal(&args, ms, sig);
        check_outcome(
            &format!("mkfs {sig} at {ms} ms of {full}"),
            &o,
            sig,
            &out,
            &before,
            &new,
            &mut tally,
        );
        remove_temporaries(&out_dir);
    }
    eprintln!("mkfs: {tally:?}");
    assert!(
        tally.interrupted_mid_write >= 1,
        "no SIGINT landed while the image was being written: {tally:?}"
    );

    // A failing run (the image does not fit the --size given) leaves the old image alone.
    let o = wafer(&[
        "mkfs",
        s(&tar),
        "-o",
        s(&old_img),
        "--size",
        "4M",
        "--force",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(digests(&old_img), old);
    // Without --force an existing image is refused with the way out.
    let o = wafer(&["mkfs", s(&tar), "-o", s(&old_img)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("exists; use --force to replace it"),
        "{}",
        stderr(&o)
    );
    assert_eq!(digests(&old_img), old);
    assert!(temporaries(f.tmp.path()).is_empty());
}

#[test]
fn approve_interrupted_or_killed_leaves_no_partial_approval() {
    let f = big_fixture();
    let recipe = f.recipe("");
    let bundle = f.build(&recipe, "bundle");
    let (store, alice, _admin) = trust_store(&f);
    let policy = f.path("policy.toml");
    std::fs::write(
        &policy,
        "[policy]\nname = \"test site\"\nfail_on = \"medium\"\n\n[[privileged]]\nid = \"priv.allowlist\"\nseverity = \"high\"\ncheck = [\"setuid\", \"setgid\", \"capabilities\"]\nallow = []\n",
    )
    .unwrap();
    let args = [
        "approve",
        s(&bundle),
        "--key",
        s(&alice),
        "--policy",
        s(&policy),
        "--expires",
        "30d",
    ];
    let before_bundle = digests(&bundle);
    let t = Instant::now();
    let first = wafer(&args);
    let full = t.elapsed().as_millis() as u64;
    assert!(first.status.success(), "approve failed: {}", stderr(&first));
    let att = bundle.join("attestations");
    let approvals: Vec<PathBuf> = std::fs::read_dir(&att)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("approval-")
        })
        .collect();
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    let approval = approvals[0].clone();
    let complete = |p: &Path| -> bool {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(p).expect("read approval")).expect("JSON");
        v["payloadType"] == "application/vnd.in-toto+json"
            && v["signatures"].as_array().map(|a| !a.is_empty()) == Some(true)
    };
    assert!(complete(&approval));

    let mut interrupted = 0;
    for (i, (ms, sig)) in points(full, 4).into_iter().enumerate() {
        let old = std::fs::read(&approval).unwrap();
        let (o, _) = run_and_signal(&args, ms, sig);
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{err}");
        // The approval is the old one or a complete new one, never partial.
        let now = std::fs::read(&approval).expect("the approval is still there");
        assert!(
            now == old || complete(&approval),
            "approve {sig} at {ms} ms (run {i}): partial approval"
        );
        match o.status.code() {
            Some(130) => {
                interrupted += 1;
                assert_eq!(err.lines().count(), 1, "{err}");
                assert!(err.starts_with("wafer: interrupted (SIGINT)"), "{err}");
                assert!(
                    temporaries(&bundle).is_empty(),
                    "{:?}",
                    temporaries(&bundle)
                );
            }
            Some(0) | None => {}
            Some(c) => panic!("approve exit {c}: {err}"),
        }
        remove_temporaries(&bundle);
    }
    assert!(interrupted >= 1, "no SIGINT landed during approve");
    // Nothing but the approval changed, and the bundle still verifies.
    let mut after = digests(&bundle);
    let mut before = before_bundle;
    after.retain(|k, _| !k.starts_with("attestations/"));
    before.retain(|k, _| !k.starts_with("attestations/"));
    assert_eq!(after, before);
    ok(wafer(&["verify", s(&bundle), "--trust", s(&store)]));
}
