//! Leases: exclusivity, expiry, release, crash recovery, and races between threads and
//! between separate processes (some SIGKILLed midway).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use deploy::lease::{derive_mac, pid_alive, LeaseError, StateDir};
use deploy::site::Site;

fn site_text(dir: &Path, range: &str) -> String {
    format!(
        r#"name = "race"
[host]
memory_mib = 4096
vcpus = 4
disk_mib = 100000
[xen]
version = "4.17"
guest_types = ["pv"]
[paths]
storage_dir = "{d}/storage"
state_dir = "{d}/state"
trust_store = "{d}/trust"
[[network]]
name = "pub"
bridge = "xenbr0"
kind = "public"
gateway = "192.0.2.1"
prefix = 24
mac_prefix = "02:16:3e"
ranges = ["{range}"]
[[network.host]]
ip = "192.0.2.200"
hostname = "named.example.org"
"#,
        d = dir.display()
    )
}

fn setup(range: &str) -> (tempfile::TempDir, Site, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let text = site_text(d.path(), range);
    let path = d.path().join("site.toml");
    std::fs::write(&path, &text).unwrap();
    let site = Site::from_file(&path).unwrap();
    (d, site, path)
}

#[test]
fn one_per_owner_exhaustion_release_expiry() {
    let (_d, site, _) = setup("192.0.2.16/30");
    let net = site.network("pub").unwrap();
    assert_eq!(net.pool.len(), 5);
    let state = StateDir::open(&site.state_dir).unwrap();
    let lock = state.lock().unwrap();
    let a = lock.acquire(net, "dep-a", 100, Some(50)).unwrap();
    assert_eq!(a.ip, Ipv4Addr::new(192, 0, 2, 16));
    assert_eq!(a.expires, Some(150));
    assert!(a.mac.starts_with("02:16:3e:"));
    assert_eq!(a.mac, derive_mac(net, a.ip, 0).to_string());
    // same owner, same network: the same lease back
    assert_eq!(lock.acquire(net, "dep-a", 101, None).unwrap(), a);
    let b = lock.acquire(net, "dep-b", 100, None).unwrap();
    let c = lock.acquire(net, "dep-c", 100, None).unwrap();
    let d = lock.acquire(net, "dep-d", 100, None).unwrap();
    let e = lock.acquire(net, "dep-e", 100, None).unwrap();
    assert_eq!(e.ip, Ipv4Addr::new(192, 0, 2, 200));
    assert_eq!(e.hostname.as_deref(), Some("named.example.org"));
    let ips: BTreeSet<_> = [&a, &b, &c, &d, &e].iter().map(|l| l.ip).collect();
    assert_eq!(ips.len(), 5);
    let macs: BTreeSet<_> = [&a, &b, &c, &d, &e].iter().map(|l| l.mac.clone()).collect();
    assert_eq!(macs.len(), 5);
    match lock.acquire(net, "dep-f", 100, None) {
        Err(LeaseError::PoolExhausted { network, size }) => {
            assert_eq!((network.as_str(), size), ("pub", 5))
        }
        other => panic!("expected exhaustion, got {other:?}"),
    }
    // release by a non-owner is refused
    assert!(matches!(
        lock.release("pub", b.ip, "dep-a"),
        Err(LeaseError::NotOwner { .. })
    ));
    lock.release("pub", b.ip, "dep-b").unwrap();
    assert_eq!(lock.acquire(net, "dep-f", 100, None).unwrap().ip, b.ip);
    // expiry: only dep-a has one
    assert!(lock.reclaim_expired(149).unwrap().is_empty());
    let gone = lock.reclaim_expired(150).unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].owner, "dep-a");
    assert_eq!(lock.all_leases().unwrap().len(), 4);
    assert_eq!(lock.release_owner("dep-c").unwrap().len(), 1);
    assert_eq!(lock.all_leases().unwrap().len(), 3);
    // bad owner names never reach the file system
    assert!(lock.acquire(net, "../x", 1, None).is_err());
}

#[test]
fn recovery_frees_pending_leases_of_dead_processes_and_tmp_files() {
    let (_d, site, _) = setup("192.0.2.16/30");
    let net = site.network("pub").unwrap();
    let state = StateDir::open(&site.state_dir).unwrap();
    let lock = state.lock().unwrap();
    let a = lock.acquire(net, "alive", 0, None).unwrap();
    let b = lock.acquire(net, "dead", 0, None).unwrap();
    let c = lock.acquire(net, "done", 0, None).unwrap();
    lock.commit("pub", c.ip, "done").unwrap();
    // a writer killed mid-write leaves a temporary file behind
    std::fs::write(
        site.state_dir.join("leases/pub/.tmp-192.0.2.19.json.1.1"),
        b"{partial",
    )
    .unwrap();
    // pretend the taking process died: every pending lease is then reclaimable
    let rec = lock.recover(&|_pid| false).unwrap();
    assert_eq!(rec.tmp_removed, 1);
    let freed: BTreeSet<_> = rec.freed.iter().map(|l| l.owner.as_str()).collect();
    assert_eq!(freed, BTreeSet::from(["alive", "dead"]));
    let left = lock.all_leases().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].owner, "done");
    assert!(left[0].committed && left[0].pid.is_none());
    // with the real liveness check our own pending lease survives
    let again = lock.acquire(net, "mine", 0, None).unwrap();
    assert!(lock.recover(&pid_alive).unwrap().freed.is_empty());
    assert!(lock
        .all_leases()
        .unwrap()
        .iter()
        .any(|l| l.owner == "mine" && l.ip == again.ip));
    assert!(rec.freed.iter().any(|l| l.ip == a.ip) && rec.freed.iter().any(|l| l.ip == b.ip));
}

#[test]
fn threads_race_on_a_small_pool() {
    let (_d, site, _) = setup("192.0.2.16/29"); // 8 + 1 host line = 9
    let site = Arc::new(site);
    let mut handles = Vec::new();
    for t in 0..16 {
        let site = Arc::clone(&site);
        handles.push(std::thread::spawn(move || {
            let net = site.network("pub").unwrap();
            let state = StateDir::open(&site.state_dir).unwrap();
            let lock = state.lock().unwrap();
            match lock.acquire(net, &format!("t{t}"), 0, None) {
                Ok(l) => Some(l.ip),
                Err(LeaseError::PoolExhausted { .. }) => None,
                Err(e) => panic!("thread {t}: {e}"),
            }
        }));
    }
    let got: Vec<Ipv4Addr> = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(got.len(), 9, "{got:?}");
    let distinct: BTreeSet<_> = got.iter().collect();
    assert_eq!(distinct.len(), 9, "an address was leased twice: {got:?}");
    let state = StateDir::open(&site.state_dir).unwrap();
    assert_eq!(state.lock().unwrap().all_leases().unwrap().len(), 9);
}

#[test]
fn processes_race_some_killed_none_double_leased_none_lost() {
    let (_d, site, site_path) = setup("192.0.2.16/28"); // 16 + 1 = 17 addresses
    let pool: BTreeSet<Ipv4Addr> = site
        .network("pub")
        .unwrap()
        .pool
        .iter()
        .map(|e| e.ip)
        .collect();
    let helper = env!("CARGO_BIN_EXE_deploy-lease-helper");
    let n = 8;
    let killed: BTreeSet<usize> = [1, 4, 6].into_iter().collect();
    let mut children = Vec::new();
    for i in 0..n {
        // the ones to be killed pause long between lease and commit
        let pause = if killed.contains(&i) { "3000" } else { "2" };
        let child = Command::new(helper)
            .args([
                site_path.to_str().unwrap(),
                "pub",
                &format!("p{i}"),
                "3",
                pause,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        children.push(child);
    }
    // two more, killed at arbitrary moments (possibly mid-write or while holding the lock)
    let random_kill: Vec<(usize, u64)> = vec![(n, 3), (n + 1, 9)];
    for &(i, _) in &random_kill {
        children.push(
            Command::new(helper)
                .args([
                    site_path.to_str().unwrap(),
                    "pub",
                    &format!("p{i}"),
                    "3",
                    "1",
                ])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    for &(i, ms) in &random_kill {
        std::thread::sleep(std::time::Duration::from_millis(ms));
        children[i].kill().unwrap();
    }
    let killed_any: BTreeSet<usize> = killed
        .iter()
        .copied()
        .chain(random_kill.iter().map(|r| r.0))
        .collect();
    let mut lines: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, child) in children.iter_mut().enumerate() {
        if killed.contains(&i) {
            let mut r = BufReader::new(child.stdout.take().unwrap());
            let mut first = String::new();
            r.read_line(&mut first).unwrap();
            // SIGKILL while it holds a pending lease
            child.kill().unwrap();
            lines.entry(i).or_default().push(first.trim().to_string());
            let mut rest = String::new();
            while r.read_line(&mut rest).unwrap_or(0) > 0 {}
            lines
                .entry(i)
                .or_default()
                .extend(rest.lines().map(str::to_string));
        }
    }
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        if !killed_any.contains(&i) {
            assert!(out.status.success(), "helper {i} failed");
            lines.entry(i).or_default().extend(
                String::from_utf8(out.stdout)
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    let mut leased: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    let mut committed: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    for l in lines.values().flatten() {
        let parts: Vec<&str> = l.split_whitespace().collect();
        match parts.as_slice() {
            ["LEASED", owner, ip] => {
                let ip: Ipv4Addr = ip.parse().unwrap();
                assert!(pool.contains(&ip));
                if let Some(prev) = leased.insert(ip, owner.to_string()) {
                    panic!("{ip} leased twice: to {prev} and to {owner}");
                }
            }
            ["COMMITTED", owner, ip] => {
                committed.insert(ip.parse().unwrap(), owner.to_string());
            }
            ["EXHAUSTED", _] | [] => {}
            other => panic!("unexpected helper output {other:?}"),
        }
    }
    // 5 survivors x 3 rounds + 3 killed x 1 = 18 demands on 17 addresses
    assert!(leased.len() >= 15, "{leased:?}");
    let state = StateDir::open(&site.state_dir).unwrap();
    let lock = state.lock().unwrap();
    let rec = lock.recover(&pid_alive).unwrap();
    for l in &rec.freed {
        assert!(!l.committed);
        assert!(
            killed_any
                .iter()
                .any(|k| l.owner.starts_with(&format!("p{k}-"))),
            "freed a survivor's lease {l:?}"
        );
    }
    assert!(
        rec.freed.len() >= killed.len(),
        "each long-pausing killed helper held one pending lease"
    );
    let after = lock.all_leases().unwrap();
    let held: BTreeMap<Ipv4Addr, String> = after.iter().map(|l| (l.ip, l.owner.clone())).collect();
    assert!(after.iter().all(|l| l.committed));
    // every committed line is in the store; anything else in the store was committed by a helper
    // killed before it could print (only the randomly killed ones), and was printed as LEASED
    for (ip, owner) in &committed {
        assert_eq!(
            held.get(ip),
            Some(owner),
            "committed lease {ip} of {owner} lost"
        );
    }
    for (ip, owner) in &held {
        if committed.get(ip) != Some(owner) {
            assert!(
                random_kill
                    .iter()
                    .any(|r| owner.starts_with(&format!("p{}-", r.0))),
                "{ip} held by {owner} without a COMMITTED line"
            );
        }
    }
    // nothing lost: every address not held can be leased again, then the pool is exhausted
    let net = site.network("pub").unwrap();
    let mut fresh = BTreeSet::new();
    for k in 0.. {
        match lock.acquire(net, &format!("after-{k}"), 0, None) {
            Ok(l) => assert!(fresh.insert(l.ip)),
            Err(LeaseError::PoolExhausted { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let all: BTreeSet<Ipv4Addr> = held.keys().copied().chain(fresh).collect();
    assert_eq!(all, pool);
    assert_eq!(held.len() + (pool.len() - held.len()), pool.len());
}
