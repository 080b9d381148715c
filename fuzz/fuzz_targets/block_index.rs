#![no_main]
//! The delta block index parser (`bundle::delta::BlockIndex::parse`) on hostile bytes: never a
//! panic, never an allocation beyond `MAX_INDEX_BYTES`; what parses re-encodes to an index that
//! parses to the same value.
use bundle::delta::BlockIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Raw bytes as published (a zstd frame) ...
    if let Ok(ix) = BlockIndex::parse(data) {
        let again = ix.to_bytes().expect("a parsed index re-encodes");
        assert_eq!(BlockIndex::parse(&again).expect("re-encoded index parses"), ix);
    }
    // ... and the same bytes as the decompressed layout, wrapped in a frame.
    if let Ok(z) = zstd::bulk::Compressor::new(1).and_then(|mut c| {
        c.include_contentsize(true)?;
        c.compress(data)
    }) {
        let _ = BlockIndex::parse(&z);
    }
});
