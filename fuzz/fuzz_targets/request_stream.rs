#![no_main]
//! See `kage::fuzzing::request_stream` for the input layout and what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kage::fuzzing::request_stream(data));
