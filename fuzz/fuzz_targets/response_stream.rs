#![no_main]
//! See `kage::fuzzing::response_stream` for the input layout and what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kage::fuzzing::response_stream(data));
