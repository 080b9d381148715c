#![no_main]
//! DSSE envelope and in-toto statement parsing, and verification, on hostile input.
use libfuzzer_sys::fuzz_target;
use trust::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use trust::key::PrivateKey;
use trust::statement::Statement;

fuzz_target!(|data: &[u8]| {
    if let Ok(st) = Statement::from_json(data) {
        // The dm-verity root of disk.img: annotation or old-layout digest.
        let _ = st.image_verity();
        let _ = st.legacy_layout();
    }
    if let Ok(e) = Envelope::from_json(data) {
        let k = PrivateKey::from_seed(&[7; 32]).public();
        let _ = e.verify(&[INTOTO_PAYLOAD_TYPE, e.payload_type.as_str()], &[k]);
        let _ = Statement::from_json(&e.payload);
        let _ = Envelope::from_json(&e.to_json());
    }
});
