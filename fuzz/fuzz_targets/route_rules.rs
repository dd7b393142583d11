#![no_main]
//! See `kage::fuzzing::route_rules` for the input layout and what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kage::fuzzing::route_rules(data));
