//! Deploy with a fake hypervisor and a fake image (through the crate-private `deploy_image`:
//! outside the crate only a `trust::Verified<Bundle>` can be deployed): files land in the
//! storage directory, leases and slots are accounted, refusals leave no trace, stop frees all.

use std::cell::RefCell;
use std::io::Write;
use std::path::Path;

use crate::deployment::{
    deploy_image as deploy, ps, stop, DeployError, DeployOptions, Hypervisor, Launch, State,
    Teardown, XlTool,
};
use crate::fit::Requirements;
use crate::site::{GuestType, Site};
use crate::wafer::Image;
use crate::xl::{Domain, GuestConfig, XlConfig};

struct FakeWafer {
    name: &'static str,
    vo: &'static str,
    memory: u64,
}

impl Image for FakeWafer {
    fn name(&self) -> &str {
        self.name
    }
    fn version(&self) -> &str {
        "1.0"
    }
    fn vo(&self) -> &str {
        self.vo
    }
    fn requirements(&self) -> Requirements {
        Requirements {
            memory_mib: self.memory,
            vcpus: 1,
            disk_mib: 1000,
            arch: "x86_64".into(),
            guest_types: vec![GuestType::Pvh, GuestType::Pv],
            min_xen: None,
        }
    }
    fn cmdline(&self) -> Option<String> {
        Some("root=/dev/xvda ro".into())
    }
    fn write_disk(&self, dest: &mut std::fs::File) -> std::io::Result<u64> {
        dest.write_all(b"disk bytes")?;
        Ok(10)
    }
    fn kernel(&self) -> std::io::Result<Vec<u8>> {
        Ok(b"kernel".to_vec())
    }
    fn initrd(&self) -> std::io::Result<Option<Vec<u8>>> {
        Ok(Some(b"initrd".to_vec()))
    }
}

#[derive(Default)]
struct FakeXen {
    calls: RefCell<Vec<String>>,
    live: RefCell<Vec<String>>,
}

impl Hypervisor for FakeXen {
    fn launches(&self) -> bool {
        true
    }
    fn domains(&self) -> Result<Option<Vec<Domain>>, DeployError> {
        Ok(Some(
            self.live
                .borrow()
                .iter()
                .map(|n| Domain {
                    name: n.clone(),
                    id: 1,
                    memory_mib: 1,
                    vcpus: 1,
                    state: "-b----".into(),
                })
                .collect(),
        ))
    }
    fn create(&self, cfg: &Path) -> Result<Launch, DeployError> {
        self.calls
            .borrow_mut()
            .push(format!("create {}", cfg.display()));
        let text = std::fs::read_to_string(cfg).unwrap();
        let g = GuestConfig::from_config(&XlConfig::parse(&text).unwrap()).unwrap();
        self.live.borrow_mut().push(g.name);
        Ok(Launch::Ran(format!("xl create {}", cfg.display())))
    }
    fn destroy(&self, name: &str) -> Result<Launch, DeployError> {
        self.calls.borrow_mut().push(format!("destroy {name}"));
        self.live.borrow_mut().retain(|n| n != name);
        Ok(Launch::Ran(format!("xl destroy {name}")))
    }
}

fn site(dir: &Path) -> Site {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/site.toml"))
        .unwrap()
        .replace(
            "/var/lib/wafer/storage",
            &format!("{}/storage", dir.display()),
        )
        .replace("/var/lib/wafer/state", &format!("{}/state", dir.display()));
    Site::from_toml_str(&text, "site.toml", None).unwrap()
}

fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let e = e.unwrap();
            out.push(e.path().display().to_string());
            if e.path().is_dir() {
                out.extend(tree(&e.path()));
            }
        }
    }
    out.sort();
    out
}

fn opts(now: u64) -> DeployOptions {
    DeployOptions {
        name: None,
        slot: None,
        user_data: None,
        ttl: Some(3600),
        now,
    }
}

#[test]
fn deploy_several_vos_refuse_one_then_stop() {
    let d = tempfile::tempdir().unwrap();
    let s = site(d.path());
    let xen = FakeXen::default();
    let cms = FakeWafer {
        name: "squid",
        vo: "cms",
        memory: 3000,
    };
    let r = deploy(&s, &cms, &opts(100), &xen).unwrap();
    assert_eq!(
        (r.name.as_str(), r.slot.as_str(), r.state),
        ("cms-squid", "edge1", State::Running)
    );
    assert_eq!(r.leases.len(), 2);
    assert!(r.leases.iter().all(|l| l.committed));
    let cfg_path = d.path().join("storage/cms-squid/xl.cfg");
    let g = GuestConfig::from_config(
        &XlConfig::parse(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (g.guest_type, g.memory_mib, g.vcpus, g.cpu_weight),
        (GuestType::Pvh, 4096, 2, Some(512))
    );
    assert_eq!(g.vifs.len(), 2);
    assert_eq!(g.vifs[0].mac.as_deref(), Some(r.leases[0].mac.as_str()));
    assert_eq!(g.vifs[0].bridge.as_deref(), Some("xenbr0"));
    assert!(!g.disks[1].readwrite && g.disks[0].readwrite);
    for f in ["disk.img", "kernel", "initrd", "cidata.img", "xl.cfg"] {
        assert!(d.path().join("storage/cms-squid").join(f).is_file(), "{f}");
    }
    assert_eq!(
        xen.calls.borrow()[0],
        format!("create {}", cfg_path.display())
    );

    let atlas = FakeWafer {
        name: "frontier",
        vo: "atlas",
        memory: 6000,
    };
    let r2 = deploy(&s, &atlas, &opts(101), &xen).unwrap();
    assert_eq!(r2.slot, "edge3");

    // a third wafer that no free slot can take: refused with reasons, nothing written
    let before = (
        tree(&d.path().join("storage")),
        tree(&d.path().join("state")),
    );
    let big = FakeWafer {
        name: "dash",
        vo: "cms",
        memory: 2000,
    };
    let e = deploy(&s, &big, &opts(102), &xen).unwrap_err().to_string();
    assert!(e.contains("slot edge1: in use by cms-squid"), "{e}");
    assert!(e.contains("slot edge2: VO cms not allowed"), "{e}");
    assert!(e.contains("slot edge3: in use by atlas-frontier"), "{e}");
    assert_eq!(
        before,
        (
            tree(&d.path().join("storage")),
            tree(&d.path().join("state"))
        )
    );

    let st = ps(&s).unwrap();
    assert_eq!(st.deployments.len(), 2);
    assert_eq!(st.leases.len(), 3);
    assert_eq!((st.used.memory_mib, st.used.vcpus), (4096 + 8192, 6));

    let (_, launch) = stop(&s, "cms-squid", true, &xen).unwrap();
    assert_eq!(
        launch,
        Teardown::Destroyed(Launch::Ran("xl destroy cms-squid".into()))
    );
    assert!(d.path().join("storage/cms-squid/disk.img").is_file());
    assert!(!d.path().join("storage/cms-squid/xl.cfg").exists());
    let st = ps(&s).unwrap();
    assert_eq!(st.deployments.len(), 1);
    assert_eq!(st.leases.len(), 1);
    // the slot is free again
    assert_eq!(deploy(&s, &big, &opts(103), &xen).unwrap().slot, "edge1");
}

#[test]
fn dry_run_prints_the_command_and_writes_everything() {
    let d = tempfile::tempdir().unwrap();
    let s = site(d.path());
    let xl = XlTool {
        xl: None,
        dry_run: true,
    };
    let w = FakeWafer {
        name: "squid",
        vo: "cdf",
        memory: 1000,
    };
    let r = deploy(&s, &w, &opts(5), &xl).unwrap();
    assert_eq!(r.state, State::Printed);
    assert_eq!(
        r.launch,
        Some(Launch::Printed(format!(
            "xl create {}/storage/cdf-squid/xl.cfg",
            d.path().display()
        )))
    );
    assert!(d.path().join("storage/cdf-squid/cidata.img").is_file());
    let (_, l) = stop(&s, "cdf-squid", false, &xl).unwrap();
    assert_eq!(
        l,
        Teardown::Released(Some(Launch::Printed("xl destroy cdf-squid".into())))
    );
    assert!(!d.path().join("storage/cdf-squid").exists());
}

// ---- recovery: every state of a deployment whose deploy died or failed, against the fake xl
// (deploy/tests/fake-xl/xl, driven through the real `XlTool`, so `xl list` parsing is real) ----

use crate::deployment::{recover_site, Record};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The fake `xl` installed in `dir/bin`; its domains live in `dir/bin/xen`.
fn fake_xl(dir: &Path) -> XlTool {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let xl = bin.join("xl");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake-xl/xl"),
        &xl,
    )
    .unwrap();
    XlTool {
        xl: Some(xl),
        dry_run: false,
    }
}

/// Names of the domains the fake hypervisor has now.
fn live(xl: &XlTool) -> Vec<String> {
    let mut v: Vec<String> = xl
        .domains()
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .filter(|n| n != "Domain-0")
        .collect();
    v.sort();
    v
}

fn fake_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("bin/xen/log")).unwrap_or_default()
}

/// What goes wrong in [`Faulty`].
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// The deploying process "dies" (panics, dropping everything) before `xl create`.
    DieBeforeCreate,
    /// It dies right after `xl create` made the domain.
    DieAfterCreate,
    /// The final commit fails: the record is made unwritable (a directory takes its name).
    CommitFails,
}

/// The fake xl with a fault injected; `destroy_fails` makes `xl destroy` fail too.
struct Faulty {
    xl: XlTool,
    fault: Fault,
    destroy_fails: bool,
    state: std::path::PathBuf,
}

impl Hypervisor for Faulty {
    fn launches(&self) -> bool {
        true
    }
    fn domains(&self) -> Result<Option<Vec<Domain>>, DeployError> {
        self.xl.domains()
    }
    fn create(&self, cfg: &Path) -> Result<Launch, DeployError> {
        if self.fault == Fault::DieBeforeCreate {
            panic!("killed before xl create");
        }
        let l = self.xl.create(cfg)?;
        match self.fault {
            Fault::DieAfterCreate => panic!("killed after xl create"),
            Fault::CommitFails => {
                // the private network's lease is taken over behind the deploy's back, so
                // committing it fails at the end
                for e in std::fs::read_dir(self.state.join("leases/private")).unwrap() {
                    let p = e.unwrap().path();
                    let mut l: serde_json::Value =
                        serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                    l["owner"] = "intruder".into();
                    std::fs::write(&p, serde_json::to_vec(&l).unwrap()).unwrap();
                }
            }
            Fault::DieBeforeCreate => {}
        }
        Ok(l)
    }
    fn destroy(&self, name: &str) -> Result<Launch, DeployError> {
        if self.destroy_fails {
            return Err(DeployError::Hypervisor {
                command: format!("xl destroy {name}"),
                message: "libxl: error: simulated failure".into(),
            });
        }
        self.xl.destroy(name)
    }
}

fn squid() -> FakeWafer {
    FakeWafer {
        name: "squid",
        vo: "cms",
        memory: 3000,
    }
}

fn faulty(d: &Path, s: &Site, fault: Fault) -> Faulty {
    Faulty {
        xl: fake_xl(d),
        fault,
        destroy_fails: false,
        state: s.state_dir.clone(),
    }
}

/// Kills (panics) a deploy inside `hv.create`; returns the pending record it left.
fn die_in_deploy(s: &Site, hv: &Faulty) -> Record {
    let r = catch_unwind(AssertUnwindSafe(|| deploy(s, &squid(), &opts(100), hv)));
    assert!(r.is_err(), "the deploy was meant to die");
    let st = ps(s).unwrap();
    assert_eq!(st.deployments.len(), 1);
    assert_eq!(st.deployments[0].state, State::Pending);
    assert_eq!(st.leases.len(), 2, "its leases are still held");
    st.deployments[0].clone()
}

#[test]
fn recovery_pending_dead_deploy_with_a_domain_destroys_then_releases() {
    let d = tempfile::tempdir().unwrap();
    let s = site(d.path());
    let hv = faulty(d.path(), &s, Fault::DieAfterCreate);
    let r = die_in_deploy(&s, &hv);
    assert_eq!(live(&hv.xl), ["cms-squid"], "the orphaned guest runs");
    // a dry run may look but not destroy: everything stays held
    let dry = XlTool {
        dry_run: true,
        ..hv.xl.clone()
    };
    let out = recover_site(&s, &dry, 200).unwrap();
    assert!(
        matches!(&out[..], [(n, Teardown::Held(why))] if n == "cms-squid" && why.contains("dry run")),
        "{out:?}"
    );
    assert_eq!(ps(&s).unwrap().leases.len(), 2);
    // xl destroy failing: still held
    let broken = Faulty {
        destroy_fails: true,
        ..faulty(d.path(), &s, Fault::DieAfterCreate)
    };
    let out = recover_site(&s, &broken, 200).unwrap();
    assert!(matches!(&out[..], [(_, Teardown::Held(_))]), "{out:?}");
    let mut held = ps(&s).unwrap().leases;
    held.sort_by_key(|l| l.ip);
    let mut recorded = r.leases.clone();
    recorded.sort_by_key(|l| l.ip);
    assert_eq!(held, recorded, "nothing released");
    assert!(d.path().join("storage/cms-squid/xl.cfg").is_file());
    // the real thing: destroyed, confirmed gone, then released
    let out = recover_site(&s, &hv.xl, 200).unwrap();
    assert!(
        matches!(&out[..], [(n, Teardown::Destroyed(Launch::Ran(c)))] if n == "cms-squid" && c == "xl destroy cms-squid"),
        "{out:?}"
    );
    assert!(live(&hv.xl).is_empty());
    let st = ps(&s).unwrap();
    assert!(st.deployments.is_empty() && st.leases.is_empty());
    assert!(!d.path().join("storage/cms-squid").exists());
    assert_eq!(
        fake_log(d.path()),
        "create cms-squid 1\ndestroy cms-squid\n"
    );
    // the same addresses go to the next deployment, and its guest is the only one
    let again = deploy(&s, &squid(), &opts(300), &hv.xl).unwrap();
    assert_eq!(
        again.leases.iter().map(|l| l.ip).collect::<Vec<_>>(),
        r.leases.iter().map(|l| l.ip).collect::<Vec<_>>()
    );
    assert_eq!(live(&hv.xl), ["cms-squid"]);
}

#[test]
fn recovery_pending_dead_deploy_without_a_domain_releases() {
    let d = tempfile::tempdir().unwrap();
    let s = site(d.path());
    let hv = faulty(d.path(), &s, Fault::DieBeforeCreate);
    die_in_deploy(&s, &hv);
    assert!(live(&hv.xl).is_empty());
    assert!(d.path().join("storage/cms-squid/xl.cfg").is_file());
    let out = recover_site(&s, &hv.xl, 200).unwrap();
    assert_eq!(out, [("cms-squid".to_string(), Teardown::Released(None))]);
    let st = ps(&s).unwrap();
    assert!(st.deployments.is_empty() && st.leases.is_empty());
    assert!(!d.path().join("storage/cms-squid").exists());
    assert_eq!(fake_log(d.path()), "", "xl create and destroy never ran");
    // without any xl to ask, a deploy that would have run xl is never released
    die_in_deploy(&s, &faulty(d.path(), &s, Fault::DieAfterCreate));
    let none = XlTool {
        xl: None,
        dry_run: false,
    };
    let out = recover_site(&s, &none, 200).unwrap();
    assert!(
        matches!(&out[..], [(_, Teardown::Held(why))] if why.contains("no xl")),
        "{out:?}"
    );
    assert_eq!(ps(&s).unwrap().leases.len(), 2);
}

#[test]
fn recovery_pending_live_deploy_is_left_alone_and_stop_waits_for_it() {
    let d = tempfile::tempdir().unwrap();
    let s = site(d.path());
    let xl = fake_xl(d.path());
    let (in_create, entered) = std::sync::mpsc::channel::<()>();
    let (go, gate) = std::sync::mpsc::channel::<()>();
    struct Gated {
        xl: XlTool,
        entered: std::sync::mpsc::Sender<()>,
        gate: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    }
    impl Hypervisor for Gated {
        fn launches(&self) -> bool {
            true
        }
        fn domains(&self) -> Result<Option<Vec<Domain>>, DeployError> {
            self.xl.domains()
        }
        fn create(&self, cfg: &Path) -> Result<Launch, DeployError> {
            self.entered.send(()).unwrap();
            self.gate.lock().unwrap().recv().unwrap();
            self.xl.create(cfg)
        }
        fn destroy(&self, name: &str) -> Result<Launch, DeployError> {
            self.xl.destroy(name)
        }
    }
    let gated = Gated {
        xl: xl.clone(),
        entered: in_create,
        gate: std::sync::Mutex::new(gate),
    };
    std::thread::scope(|sc| {
        let deployer = sc.spawn(|| deploy(&s, &squid(), &opts(100), &gated));
        entered.recv().unwrap();
        // the deploy is inside `xl create`: recovery leaves it alone
        let out = recover_site(&s, &xl, 200).unwrap();
        assert_eq!(out, [("cms-squid".to_string(), Teardown::InProgress)]);
        assert_eq!(ps(&s).unwrap().leases.len(), 2);
        // stop blocks on the deploy's claim (seen in /proc/locks as a waiting flock) ...
        let claim = d.path().join("state/deployments/cms-squid.lock");
        let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&claim).unwrap());
        let stopper = sc.spawn(|| stop(&s, "cms-squid", false, &xl));
        let waiting = format!(":{ino} ");
        while !std::fs::read_to_string("/proc/locks")
            .unwrap()
            .lines()
            .any(|l| l.contains("->") && l.contains("FLOCK") && l.contains(&waiting))
        {
            assert!(
                !stopper.is_finished(),
                "stop did not wait for the deploy: {:?}",
                stopper.join()
            );
            std::thread::yield_now();
        }
        assert_eq!(
            ps(&s).unwrap().leases.len(),
            2,
            "nothing freed while xl create runs"
        );
        // ... and once the deploy has finished, destroys the guest it made and releases
        go.send(()).unwrap();
        let rec = deployer.join().unwrap().unwrap();
        assert_eq!(rec.state, State::Running);
        let (_, t) = stopper.join().unwrap().unwrap();
        assert_eq!(
            t,
            Teardown::Destroyed(Launch::Ran("xl destroy cms-squid".into()))
        );
    });
    assert_eq!(
        fake_log(d.path()),
        "create cms-squid 1\ndestroy cms-squid\n"
    );
    assert!(live(&xl).is_empty());
    let st = ps(&s).unwrap();
    assert!(st.deployments.is_empty() && st.leases.is_empty());
    assert!(!d.path().join("state/deployments/cms-squid.lock").exists());
}

#[test]
fn recovery_commit_failure_destroys_the_guest_or_keeps_everything() {
    let d = tempfile::tempdir().unwrap();
    let s = site(d.path());
    let owners = |net: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d.path().join("state/leases").join(net))
            .unwrap()
            .map(|e| {
                let l: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
                l["owner"].as_str().unwrap().to_string()
            })
            .collect();
        v.sort();
        v
    };
    // the final commit fails and xl destroy works: no guest left, its addresses free
    let hv = faulty(d.path(), &s, Fault::CommitFails);
    let e = deploy(&s, &squid(), &opts(100), &hv)
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not leased to cms-squid"), "{e}");
    assert!(
        e.contains("its guest was destroyed (xl destroy cms-squid)"),
        "{e}"
    );
    assert!(live(&hv.xl).is_empty());
    assert!(owners("public").is_empty());
    assert_eq!(owners("private"), ["intruder"], "not ours: left alone");
    assert!(ps(&s).unwrap().deployments.is_empty());
    assert!(!d.path().join("storage/cms-squid").exists());
    std::fs::remove_dir_all(d.path().join("state/leases/private")).unwrap();

    // the final commit fails and so does xl destroy: the guest runs, everything stays held
    let hv = Faulty {
        destroy_fails: true,
        ..faulty(d.path(), &s, Fault::CommitFails)
    };
    let e = deploy(&s, &squid(), &opts(200), &hv)
        .unwrap_err()
        .to_string();
    assert!(e.contains("stay held until the hypervisor confirms"), "{e}");
    assert_eq!(live(&hv.xl), ["cms-squid"]);
    assert_eq!(owners("public"), ["cms-squid"]);
    let st = ps(&s).unwrap();
    assert_eq!(st.deployments.len(), 1);
    assert_eq!(st.deployments[0].state, State::Pending);
    assert!(d.path().join("storage/cms-squid/disk.img").is_file());
    std::fs::remove_dir_all(d.path().join("state/leases/private")).unwrap();
    // the next deploy's recovery destroys the guest left behind, confirms it gone, and only
    // then are the addresses leased again: one guest at a time holds them
    let again = deploy(&s, &squid(), &opts(300), &hv.xl).unwrap();
    assert_eq!(again.state, State::Running);
    assert_eq!(live(&hv.xl), ["cms-squid"]);
    assert_eq!(
        fake_log(d.path()),
        "create cms-squid 1\ndestroy cms-squid\ncreate cms-squid 2\ndestroy cms-squid\ncreate cms-squid 3\n"
    );
    assert_eq!(ps(&s).unwrap().leases.len(), 2);
}

#[test]
fn recovery_expired_deployment_is_destroyed_before_its_leases_go() {
    let d = tempfile::tempdir().unwrap();
    let s = site(d.path());
    let xl = fake_xl(d.path());
    deploy(&s, &squid(), &opts(100), &xl).unwrap();
    assert!(
        recover_site(&s, &xl, 3699).unwrap().is_empty(),
        "not yet expired"
    );
    assert_eq!(live(&xl), ["cms-squid"]);
    let out = recover_site(&s, &xl, 3700).unwrap();
    assert!(matches!(&out[..], [(_, Teardown::Destroyed(_))]), "{out:?}");
    assert!(live(&xl).is_empty());
    assert!(ps(&s).unwrap().leases.is_empty());
}

#[test]
fn recovery_finishes_a_stop_that_died_keeping_the_disk_if_asked() {
    let d = tempfile::tempdir().unwrap();
    let s = site(d.path());
    let xl = fake_xl(d.path());
    deploy(&s, &squid(), &opts(100), &xl).unwrap();
    // what `wafer stop --keep-disk` writes before it runs xl destroy, then the process dies
    let rec = d.path().join("state/deployments/cms-squid.json");
    let mut r: serde_json::Value = serde_json::from_slice(&std::fs::read(&rec).unwrap()).unwrap();
    r["state"] = "stopping".into();
    r["keep_disk"] = true.into();
    std::fs::write(&rec, serde_json::to_vec(&r).unwrap()).unwrap();
    let out = recover_site(&s, &xl, 200).unwrap();
    assert!(matches!(&out[..], [(_, Teardown::Destroyed(_))]), "{out:?}");
    assert!(live(&xl).is_empty());
    assert!(ps(&s).unwrap().leases.is_empty());
    assert!(d.path().join("storage/cms-squid/disk.img").is_file());
    assert!(!d.path().join("storage/cms-squid/xl.cfg").exists());
}

#[test]
fn a_foreign_domain_of_the_same_name_is_refused_not_destroyed() {
    let d = tempfile::tempdir().unwrap();
    let s = site(d.path());
    let xl = fake_xl(d.path());
    // an operator's own guest called cms-squid, made without wafer
    let cfg = d.path().join("own/xl.cfg");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, "name = \"cms-squid\"\nmemory = 512\n").unwrap();
    xl.create(&cfg).unwrap();
    let e = deploy(&s, &squid(), &opts(100), &xl).unwrap_err();
    assert!(
        matches!(e, DeployError::DomainExists(ref n) if n == "cms-squid"),
        "{e}"
    );
    assert_eq!(live(&xl), ["cms-squid"], "left alone");
    let st = ps(&s).unwrap();
    assert!(st.deployments.is_empty() && st.leases.is_empty());
    assert!(!d.path().join("storage/cms-squid").exists());
}
