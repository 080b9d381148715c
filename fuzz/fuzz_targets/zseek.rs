#![no_main]
//! Seekable zstd reader on hostile input: table parsing, random reads, full parallel pass.
use libfuzzer_sys::fuzz_target;
use rootfs::zseek::{for_each_frame, SeekableReader};
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    let Ok(mut r) = SeekableReader::new(Cursor::new(data)) else { return };
    let size = r.size();
    let mut buf = [0u8; 4096];
    for off in [0, size / 2, size.saturating_sub(1), size + 1] {
        let _ = r.read_at(off, &mut buf);
    }
    let table = r.table().clone();
    let _ = for_each_frame(&mut Cursor::new(data), &table, 1, |_, _, d| d.len(), |_, _, _, _| Ok(()), |_| {});
});
