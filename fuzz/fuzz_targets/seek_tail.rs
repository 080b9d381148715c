#![no_main]
//! Reading a layer's seek table from its fetched tail (`bundle::delta::parse_tail`), with a
//! hostile tail, layer size and frame count: never a panic, never an allocation from the
//! declared count before it is checked against the expected one.
use bundle::delta::parse_tail;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let layer = u64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8]));
    let frames = u64::from(u32::from_le_bytes(data[8..12].try_into().unwrap_or([0; 4])));
    let tail = &data[12..];
    for l in [layer, tail.len() as u64, tail.len() as u64 + 1 + (layer % 4096)] {
        if let Ok(t) = parse_tail(l, tail, frames) {
            assert_eq!(t.frames.len() as u64, frames);
            assert!(t.compressed_frames_size() + t.table_frame_size() == l);
        }
    }
});
