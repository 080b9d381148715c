//! Issue: "Deploy recovery orphans running guests" and "--user-data /dev/zero".
//!
//! The real `wafer` binary deploys and stops against a fake Xen (`deploy/tests/fake-xl/xl`, put
//! first on the PATH of the `wafer` it runs: wafer itself has no test mode), and is killed with
//! SIGKILL at random points: while verifying, writing the disk, inside `xl create` before or
//! after the domain appears, at the commit; some stops run while their deploy is still pending.
//! After every step the fake hypervisor's live domains are checked against the site's state: no
//! address, MAC or slot is used by two live domains, and every live domain's address is leased
//! to it (never freed under a running guest). At the end a `wafer recover` leaves exactly one
//! running deployment per live domain, and every domain a killed deploy left was destroyed.
//!
//! The random choices come from a seed printed at the start (set WAFER_KILL_SEED to replay).
//! Every `wafer` run has a watchdog, so a hang fails the test instead of stalling it.
//!
//! Needs the Debian packages `tar`, `util-linux` (flock) and `mtools` (mtype).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const POLICY: &str = "[policy]\nname = \"test site\"\nfail_on = \"medium\"\n\n[[privileged]]\nid = \"priv.allowlist\"\nseverity = \"high\"\ncheck = [\"setuid\", \"setgid\", \"capabilities\"]\nallow = []\n";

/// Longest any one `wafer` run may take before the test calls it a hang.
const WATCHDOG: Duration = Duration::from_secs(120);

/// splitmix64: small, seeded, good enough to pick kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A built, provenance-signed, approved bundle and a site with three slots, four addresses
/// and the fake `xl` in `bin/`.
struct World {
    fx: Fixture,
    bundle: PathBuf,
    site: PathBuf,
    bin: PathBuf,
    seed: u64,
}

fn world(build: bool) -> World {
    let fx = Fixture::new(|_| {});
    let (store, alice, admin) = site_trust_store(&fx);
    let policy = fx.path("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let bundle = fx.path("squid");
    if build {
        let recipe = fx.recipe(
            "[[step]]\ntype = \"copy\"\nsrc = \"files/squid.conf\"\ndest = \"/etc/squid/squid.conf\"\n",
        );
        ok(wafer(&[
            "build",
            s(&recipe),
            "-o",
            s(&bundle),
            "--sign",
            s(&admin),
        ]));
        ok(wafer(&[
            "approve",
            s(&bundle),
            "--key",
            s(&alice),
            "--policy",
            s(&policy),
        ]));
    }

    // three slots told apart by their cpu_weight in xl.cfg; one network of four addresses
    let mut slots = String::new();
    for i in 1..=3 {
        slots += &format!(
            "[[slot]]\nname = \"edge{i}\"\nmemory_mib = 1024\nvcpus = 1\ncpu_weight = {}\ndisk_mib = 4096\narch = \"x86_64\"\nvos = [\"cms\"]\nnetworks = [\"public\"]\n",
            100 + i
        );
    }
    let site = fx.path("site.toml");
    std::fs::write(
        &site,
        format!(
            "name = \"kill-test\"\n[host]\nmemory_mib = 4096\nvcpus = 4\ndisk_mib = 409600\n[xen]\nversion = \"4.17\"\nguest_types = [\"pv\", \"pvh\"]\n[paths]\nstorage_dir = \"{}\"\nstate_dir = \"{}\"\ntrust_store = \"{}\"\n{slots}[[network]]\nname = \"public\"\nbridge = \"xenbr0\"\nkind = \"public\"\ngateway = \"192.0.2.1\"\nprefix = 24\ndns = [\"192.0.2.53\"]\nmac_prefix = \"02:16:3e\"\nranges = [\"192.0.2.16/30\"]\n",
            fx.path("storage").display(),
            fx.path("state").display(),
            store.display()
        ),
    )
    .unwrap();
    let bin = fx.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/tests/fake-xl/xl"),
        bin.join("xl"),
    )
    .unwrap();
    let seed = std::env::var("WAFER_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("WAFER_KILL_SEED={seed}");
    World {
        fx,
        bundle,
        site,
        bin,
        seed,
    }
}

impl World {
    /// `wafer ARGS` with the fake xl first on PATH, started (not waited for).
    fn spawn(&self, args: &[&str]) -> Child {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(env!("CARGO_BIN_EXE_wafer"))
            .args(args)
            .env("PATH", path)
            .env("SOURCE_DATE_EPOCH", "1500000000")
            .env_remove("WAFER_PASSPHRASE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run wafer")
    }

    fn run(&self, args: &[&str]) -> Output {
        finish(
            self.spawn(args),
            &format!("seed {}: wafer {args:?}", self.seed),
        )
    }

    fn deploy(&self, name: &str) -> Child {
        self.spawn(&[
            "deploy",
            s(&self.bundle),
            "--site",
            s(&self.site),
            "--name",
            name,
        ])
    }

    fn stop(&self, name: &str) -> Child {
        self.spawn(&["stop", name, "--site", s(&self.site)])
    }

    /// The fake hypervisor's live guests: name -> (ip, mac, slot), read under its lock.
    fn guests(&self) -> BTreeMap<String, (String, String, String)> {
        // `xl list` takes the fake's lock, so a create still finishing is waited for
        let o = Command::new(self.bin.join("xl"))
            .arg("list")
            .output()
            .unwrap();
        assert!(o.status.success());
        let listed: BTreeSet<String> = deploy::xl::parse_list(&String::from_utf8_lossy(&o.stdout))
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .filter(|n| n != "Domain-0")
            .collect();
        let dir = self.bin.join("xen/domains");
        let mut out = BTreeMap::new();
        for name in listed {
            let cfg = std::fs::read_to_string(dir.join(format!("{name}.cfg"))).unwrap();
            let g =
                deploy::xl::GuestConfig::from_config(&deploy::xl::XlConfig::parse(&cfg).unwrap())
                    .unwrap();
            let mac = g.vifs[0].mac.clone().unwrap();
            let slot = format!("edge{}", g.cpu_weight.unwrap() - 100);
            let env = run(Command::new("mtype")
                .arg("-i")
                .arg(dir.join(format!("{name}.cidata")))
                .arg("::wafer-context.env"));
            let ip = env
                .lines()
                .find_map(|l| l.strip_prefix("WAFER_ETH0_IP='"))
                .and_then(|v| v.strip_suffix('\''))
                .unwrap()
                .to_string();
            out.insert(name, (ip, mac, slot));
        }
        out
    }

    /// Leases in the site's state: ip -> (owner, mac).
    fn leases(&self) -> BTreeMap<String, (String, String)> {
        let mut out = BTreeMap::new();
        let Ok(rd) = std::fs::read_dir(self.fx.path("state/leases/public")) else {
            return out;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json")
                && !p.file_name().unwrap().to_string_lossy().starts_with('.')
            {
                let l: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                out.insert(
                    l["ip"].as_str().unwrap().to_string(),
                    (
                        l["owner"].as_str().unwrap().to_string(),
                        l["mac"].as_str().unwrap().to_string(),
                    ),
                );
            }
        }
        out
    }

    /// No address, MAC or slot used by two live guests; each live guest's address is leased to
    /// it with its MAC. Returns the live guests.
    fn check(&self, when: &str) -> BTreeMap<String, (String, String, String)> {
        let g = self.guests();
        let leases = self.leases();
        let ctx = format!(
            "seed {}, {when}: guests {g:?}, leases {leases:?}",
            self.seed
        );
        let ips: BTreeSet<_> = g.values().map(|v| &v.0).collect();
        let macs: BTreeSet<_> = g.values().map(|v| &v.1).collect();
        let slots: BTreeSet<_> = g.values().map(|v| &v.2).collect();
        assert_eq!(ips.len(), g.len(), "an address used twice; {ctx}");
        assert_eq!(macs.len(), g.len(), "a MAC used twice; {ctx}");
        assert_eq!(slots.len(), g.len(), "a slot used twice; {ctx}");
        for (name, (ip, mac, _)) in &g {
            assert_eq!(
                leases.get(ip),
                Some(&(name.clone(), mac.clone())),
                "live guest {name} lost its lease; {ctx}"
            );
        }
        g
    }

    fn pending_exists(&self, name: &str) -> bool {
        self.fx
            .path(&format!("state/deployments/{name}.json"))
            .exists()
    }
}

/// Waits for `child` with the watchdog; panics (after killing it) on a hang.
fn finish(mut child: Child, what: &str) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > WATCHDOG {
            let _ = child.kill();
            let o = child.wait_with_output().expect("output");
            panic!(
                "{what} hung for {WATCHDOG:?}: stderr {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Lets `child` run for `ms` milliseconds, then SIGKILLs it if it is still running. Returns
/// whether it was killed.
fn kill_after(child: &mut Child, ms: u64) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(ms) {
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    child.try_wait().expect("wait").is_none() && child.kill().is_ok()
}

#[test]
fn deploys_killed_at_random_points_never_leave_a_guest_without_its_leases() {
    let w = world(true);
    let mut rng = Rng(w.seed);
    let site = s(&w.site).to_string();

    // one undisturbed deploy and stop: how long a deploy takes here sets the kill window
    let t0 = Instant::now();
    ok(w.run(&[
        "deploy",
        s(&w.bundle),
        "--site",
        &site,
        "--name",
        "cms-first",
    ]));
    let full = t0.elapsed().as_millis() as u64;
    w.check("after the first deploy");
    ok(w.run(&["stop", "cms-first", "--site", &site]));
    assert!(w.check("after the first stop").is_empty());

    let (mut killed, mut stops_during_deploy, mut deployed) = (0, 0, 0);
    let mut orphans = BTreeSet::new();
    for i in 0..50 {
        // seconds the fake xl create spends before and after the domain appears
        let before = rng.below(3) as f64 * 0.05;
        let after = rng.below(3) as f64 * 0.05;
        std::fs::write(w.bin.join("create-delay"), format!("{before} {after}\n")).unwrap();
        let name = format!("cms-d{i}");
        let mut child = w.deploy(&name);
        match rng.below(3) {
            // kill at a random moment of the deploy
            0 | 1 => {
                // mostly late in the deploy, where xl create and the commit are
                let at = if rng.below(4) == 0 {
                    rng.below(full)
                } else {
                    full * 3 / 4 + rng.below(full / 2 + 300)
                };
                if kill_after(&mut child, at) {
                    killed += 1;
                    let _ = finish(child, &name);
                    // a guest whose deploy died before committing: an orphan recovery must reap
                    let rec = w.fx.path(&format!("state/deployments/{name}.json"));
                    let pending = std::fs::read_to_string(&rec)
                        .is_ok_and(|r| r.contains("\"state\": \"pending\""));
                    if pending && w.guests().contains_key(&name) {
                        orphans.insert(name.clone());
                    }
                } else {
                    let _ = finish(child, &name);
                }
            }
            // stop it while it is (probably) still pending, and maybe kill the deploy too
            _ => {
                while !w.pending_exists(&name) && child.try_wait().expect("wait").is_none() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let stopper = w.stop(&name);
                stops_during_deploy += 1;
                if rng.below(2) == 0 && kill_after(&mut child, rng.below(full)) {
                    killed += 1;
                }
                let d = finish(child, &name);
                if d.status.success() {
                    deployed += 1;
                }
                let st = finish(stopper, &format!("stop {name}"));
                // a stop either tore it down or found nothing (the deploy failed and undid itself)
                assert!(
                    st.status.success() || stderr(&st).contains("no deployment called"),
                    "seed {}: stop {name}: {}",
                    w.seed,
                    stderr(&st)
                );
            }
        }
        let live = w.check(&format!("round {i} ({name})"));
        // keep slots free: stop a random live deployment when all three are used
        if live.len() == 3 {
            let victim = live.keys().nth(rng.below(3) as usize).unwrap().clone();
            let mut c = w.stop(&victim);
            if rng.below(4) == 0 && kill_after(&mut c, rng.below(200)) {
                killed += 1;
            }
            let _ = finish(c, &victim);
            w.check(&format!("round {i}, after stopping {victim}"));
        }
    }

    // recovery reconciles everything killed deploys and stops left behind
    let o = w.run(&["recover", "--site", &site]);
    assert!(
        o.status.success(),
        "seed {}: {}{}",
        w.seed,
        stdout(&o),
        stderr(&o)
    );
    let live = w.check("after recover");
    let ps = ok(w.run(&["ps", "--site", &site, "--json"]));
    let ps: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    let running: BTreeMap<String, (String, String)> = ps["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["state"], "running", "seed {}: {d}", w.seed);
            (
                d["name"].as_str().unwrap().to_string(),
                (
                    d["slot"].as_str().unwrap().to_string(),
                    d["leases"][0]["ip"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    let guests: BTreeMap<String, (String, String)> = live
        .iter()
        .map(|(n, (ip, _, slot))| (n.clone(), (slot.clone(), ip.clone())))
        .collect();
    assert_eq!(
        running, guests,
        "seed {}: one running deployment per live guest",
        w.seed
    );
    assert_eq!(
        ps["leases"].as_array().unwrap().len(),
        live.len(),
        "seed {}: no lease without a guest",
        w.seed
    );
    // every domain ever created is either live (and recorded) or was destroyed
    let log = std::fs::read_to_string(w.bin.join("xen/log")).unwrap_or_default();
    let mut alive = BTreeSet::new();
    for l in log.lines() {
        match l.split(' ').collect::<Vec<_>>()[..] {
            ["create", n, _] => assert!(alive.insert(n.to_string()), "seed {}: {log}", w.seed),
            ["destroy", n] => assert!(alive.remove(n), "seed {}: {log}", w.seed),
            _ => panic!("fake xl log line {l:?}"),
        }
    }
    assert_eq!(alive, live.keys().cloned().collect::<BTreeSet<_>>());
    assert!(
        orphans.iter().all(|o| !live.contains_key(o)),
        "seed {}: an orphaned guest survived: {orphans:?} {live:?}",
        w.seed
    );
    // and what is left can be stopped cleanly
    for n in live.keys() {
        ok(w.run(&["stop", n, "--site", &site]));
    }
    assert!(w.check("at the end").is_empty());
    assert!(w.leases().is_empty());
    println!(
        "seed {}: 50 deploys, {killed} kills, {} orphaned guests destroyed, {stops_during_deploy} stops during a deploy, {deployed} of those deployed, {} creates",
        w.seed,
        orphans.len(),
        log.lines().filter(|l| l.starts_with("create")).count()
    );
}

#[test]
fn user_data_must_be_a_bounded_regular_file() {
    // refused before the bundle is even looked at: no bundle needed
    let w = world(false);
    let site = s(&w.site).to_string();
    let fifo = w.fx.path("user-data.fifo");
    run(Command::new("mkfifo").arg(&fifo));
    let big = w.fx.path("user-data.big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len((16 << 20) + 1)
        .unwrap();
    for (ud, why) in [
        ("/dev/zero", "character device"),
        (s(&fifo), "FIFO"),
        (s(&big), "larger than the 16777216 bytes"),
        (s(&w.fx.path("keys")), "directory"),
    ] {
        let o = w.run(&[
            "deploy",
            s(&w.bundle),
            "--site",
            &site,
            "--dry-run",
            "--user-data",
            ud,
        ]);
        assert!(!o.status.success(), "{ud} accepted");
        let e = stderr(&o);
        assert!(e.contains(ud) && e.contains(why), "{ud}: {e}");
        assert!(
            !w.fx.path("state/deployments").exists(),
            "{ud}: state written"
        );
    }
}
