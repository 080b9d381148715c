//! Test helper for the multi-process lease race (deploy/tests/lease.rs): takes leases on one
//! network of a site in a loop, printing what it did, so the test can race and SIGKILL it.
//!
//! Usage: deploy-lease-helper SITE.toml NETWORK OWNER_PREFIX ROUNDS PAUSE_MS
//! Each round: lock, acquire (pending), print `LEASED owner ip`, unlock, sleep PAUSE_MS, lock,
//! commit, print `COMMITTED owner ip`. Prints `EXHAUSTED owner` when the pool is full.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use deploy::lease::{LeaseError, StateDir};
use deploy::site::Site;

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, site, network, prefix, rounds, pause] = args.as_slice() else {
        return Err(
            "usage: deploy-lease-helper SITE.toml NETWORK OWNER_PREFIX ROUNDS PAUSE_MS".into(),
        );
    };
    let site = Site::from_file(Path::new(site)).map_err(|e| e.to_string())?;
    let net = site
        .network(network)
        .ok_or_else(|| format!("no network {network}"))?
        .clone();
    let rounds: u32 = rounds.parse().map_err(|_| "bad ROUNDS".to_string())?;
    let pause: u64 = pause.parse().map_err(|_| "bad PAUSE_MS".to_string())?;
    let state = StateDir::open(&site.state_dir).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    for k in 0..rounds {
        let owner = format!("{prefix}-{k}");
        let lease = {
            let lock = state.lock().map_err(|e| e.to_string())?;
            match lock.acquire(&net, &owner, 1_000, None) {
                Ok(l) => l,
                Err(LeaseError::PoolExhausted { .. }) => {
                    writeln!(out, "EXHAUSTED {owner}").map_err(|e| e.to_string())?;
                    out.flush().map_err(|e| e.to_string())?;
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        writeln!(out, "LEASED {owner} {}", lease.ip).map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        std::thread::sleep(std::time::Duration::from_millis(pause));
        let lock = state.lock().map_err(|e| e.to_string())?;
        lock.commit(&net.name, lease.ip, &owner)
            .map_err(|e| e.to_string())?;
        drop(lock);
        writeln!(out, "COMMITTED {owner} {}", lease.ip).map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("deploy-lease-helper: {e}");
            ExitCode::FAILURE
        }
    }
}
