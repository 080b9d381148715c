//! Compress a file to seekable zstd with `rootfs::zseek::compress` alone (no hashing), for the
//! benchmark script's compression-throughput comparison with `zstd -T0`:
//!
//!     cargo run --release -p rootfs --example zcompress -- IN OUT [LEVEL] [FRAME_BYTES]
use std::io::BufWriter;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: zcompress IN OUT [LEVEL (3)] [FRAME_BYTES (1048576)]");
        std::process::exit(2);
    }
    let level: i32 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let frame: usize = args
        .get(4)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1 << 20);
    let input = std::fs::File::open(&args[1])?;
    let out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&args[2])?);
    let table = rootfs::zseek::compress(input, out, frame, level, 0)?;
    eprintln!("{} frames", table.frames.len());
    Ok(())
}
