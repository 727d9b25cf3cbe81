//! Fuzzes the generation-metadata reader: any bytes must give Ok or Err, never a panic, and
//! bounded memory and time. Run from `fuzz/`'s parent: `cargo +nightly fuzz run metadata`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = iw_lab::metadata::read_bytes(data) {
        let _ = serde_json::to_string(&meta).expect("GenMeta serialises");
    }
    // The container layer alone, too (its carriers are what the generators parse).
    if let Ok(carriers) =
        iw_lab::metadata::container::read_carriers(&mut std::io::Cursor::new(data))
    {
        let _ = serde_json::to_string(&carriers).expect("Carriers serialise");
    }
});
