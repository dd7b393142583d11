//! The `kage` binary as a user runs it.

use std::process::Command;

fn kage(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kage"))
        .args(args)
        .output()
        .expect("run kage");
    let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8 output");
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

#[test]
fn help_describes_usage_and_exits_zero() {
    let (code, out, _) = kage(&["--help"]);
    assert_eq!(code, 0);
    for needle in ["USAGE", "--master", "--shadow", "RUST_LOG"] {
        assert!(out.contains(needle), "--help lacks {needle}:\n{out}");
    }
}

#[test]
fn version() {
    let (code, out, _) = kage(&["-V"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("kage {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn unknown_flag_is_named_and_exits_two() {
    let (code, _, err) = kage(&["--bogus"]);
    assert_eq!(code, 2);
    assert!(err.contains("--bogus") && err.contains("--help"), "{err}");
}

#[test]
fn the_demo_compares_two_sample_backends_and_exits_zero() {
    let (code, out, err) = kage(&["demo"]);
    assert_eq!(code, 0, "{out}{err}");
    for needle in [
        "sent 40 requests",
        "comparisons of new with the master: 0 match, 30 mismatch, 10 ignored",
        "  new      body    /price               30",
    ] {
        assert!(out.contains(needle), "no {needle:?} in:\n{out}");
    }
    let rows: Vec<&str> = out.lines().filter(|l| l.contains("200 x40")).collect();
    assert_eq!(rows.len(), 2, "{out}");
    let (code, _, err) = kage(&["demo", "--now"]);
    assert_eq!(code, 2);
    assert!(err.contains("kage demo takes no arguments"), "{err}");
}
