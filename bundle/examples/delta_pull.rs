//! Measures a delta pull between two bundles on this machine (scripts/bench.sh, `delta`):
//! computes the new bundle's block index (what a pusher publishes), then pulls the new
//! `disk.img.zst` from a counting local "remote" with the old bundle as the earlier version,
//! checks the result against the new wafer.json, and prints the bytes fetched.
//!
//!     cargo run --release -p bundle --example delta_pull -- OLD_BUNDLE NEW_BUNDLE WORK_DIR

use std::path::PathBuf;

use bundle::delta::{self, BlockIndex, FileRange};
use bundle::stream::{Expected, StreamSink};
use bundle::Bundle;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [old, new, work] = &args[..] else {
        return Err("usage: delta_pull OLD_BUNDLE NEW_BUNDLE WORK_DIR".into());
    };
    let old = Bundle::open(old)?;
    let new = Bundle::open(new)?;
    let t = std::time::Instant::now();
    let index = BlockIndex::compute(new.disk())?.to_bytes()?;
    let index_secs = t.elapsed().as_secs_f64();
    let expected = Expected::from_manifest(new.manifest())?;
    let partial = work.join("disk.img.zst.partial");
    let _ = std::fs::remove_file(&partial);
    let sink = StreamSink::create(&partial, expected)?;
    let mut remote = FileRange::open(new.disk().path())?;
    let t = std::time::Instant::now();
    let (done, summary) = delta::pull(Some(old.disk()), Some(&index), &mut remote, sink)?;
    let pull_secs = t.elapsed().as_secs_f64();
    let sha = |p: &std::path::Path| -> std::io::Result<String> {
        let out = std::process::Command::new("sha256sum").arg(p).output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .split(' ')
            .next()
            .unwrap_or("")
            .to_string())
    };
    let identical = sha(&done.path)? == sha(new.disk().path())?;
    std::fs::remove_file(&done.path)?;
    let layer = summary.report.layer_size;
    let fetched = remote.fetched();
    println!(
        "{{\"layer_bytes\":{layer},\"fetched_bytes\":{fetched},\"index_bytes\":{},\"requests\":{},\"frames\":{},\"frames_local\":{},\"frames_fetched\":{},\"frames_refetched\":{},\"ratio\":{:.4},\"ratio_with_index\":{:.4},\"identical\":{identical},\"index_secs\":{index_secs:.2},\"pull_secs\":{pull_secs:.2}}}",
        index.len(),
        remote.requests(),
        done.digests.table.frames.len(),
        summary.report.frames_local,
        summary.report.frames_fetched,
        summary.report.frames_refetched,
        fetched as f64 / layer as f64,
        (fetched + index.len() as u64) as f64 / layer as f64,
    );
    if !identical {
        return Err("the pulled disk.img.zst differs from the new bundle's".into());
    }
    Ok(())
}
