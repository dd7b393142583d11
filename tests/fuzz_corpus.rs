//! The fuzz corpus on plain `cargo test`: the seeds made from the HTTP
//! corpus are committed, and every file under `fuzz/corpus/<target>/` and
//! `fuzz/artifacts/<target>/` goes through the fuzz target's own function.

mod cases;

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

use cases::{CHUNKED, REQUESTS, RESPONSES};

/// A fuzz target by name and the function its `fuzz_target!` calls.
type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 7] = [
    ("request_stream", kage::fuzzing::request_stream),
    ("response_stream", kage::fuzzing::response_stream),
    ("chunked", kage::fuzzing::chunked),
    ("differential", kage::fuzzing::differential),
    ("route_rules", kage::fuzzing::route_rules),
    ("compare", kage::fuzzing::compare),
    ("digest", kage::fuzzing::digest),
];

/// Two responses for the `compare` target: `[0] [len hi] [len lo] a b`.
fn pair(a: &[u8], b: &[u8]) -> Vec<u8> {
    let n = u16::try_from(a.len()).expect("a short seed");
    [&[0u8][..], &n.to_be_bytes(), a, b].concat()
}

fn response(extra: &str, body: &[u8]) -> Vec<u8> {
    let head = format!("HTTP/1.1 200 OK\r\n{extra}Content-Length: {}\r\n\r\n", body.len());
    [head.as_bytes(), body].concat()
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// (target, file name, bytes) for every seed the corpus tables give.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let with = |prefix: &[u8], wire: &[u8]| [prefix, wire].concat();
    for c in REQUESTS {
        out.push(("request_stream", format!("seed-{}", c.name), with(&[0], c.wire)));
        out.push(("differential", format!("seed-req-{}", c.name), with(&[0], c.wire)));
    }
    for c in RESPONSES {
        out.push(("response_stream", format!("seed-{}", c.name), with(&[c.ctx, 0], c.wire)));
        out.push((
            "differential",
            format!("seed-res-{}", c.name),
            with(&[0x80 | c.ctx], c.wire),
        ));
    }
    for (name, wire) in CHUNKED {
        out.push(("chunked", format!("seed-{name}"), with(&[0], wire)));
    }
    for (name, wire) in cases::ROUTE {
        out.push(("route_rules", format!("seed-{name}"), with(&[3], wire)));
    }
    let json = "Content-Type: application/json\r\n";
    let a = response(json, br#"{"a":{"x":1},"s":[1,2],"n":1.0,"v":"old","l":[1,2,3]}"#);
    let b = response(json, br#"{"a":{"x":2},"s":[2,1],"n":1.2,"v":"new","l":[1]}"#);
    let text: Vec<u8> = (0..17_000u32).flat_map(|i| i.to_le_bytes()).collect();
    out.push(("digest", "seed-identity".into(), [&[0u8, 7][..], &text].concat()));
    out.push(("digest", "seed-gzip".into(), [&[1u8, 1][..], &text[..8_000]].concat()));
    out.push((
        "digest",
        "seed-not-gzip".into(),
        [&[2u8, 9][..], b"plainly not gzip"].concat(),
    ));
    out.push(("compare", "seed-json".into(), pair(&a, &b)));
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(br#"{"v":"old"}"#).unwrap();
        e.finish().unwrap()
    };
    let zipped = response("Content-Type: application/json\r\nContent-Encoding: gzip\r\n", &gz);
    out.push(("compare", "seed-gzip".into(), pair(&zipped, &b)));
    let chunked = b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\nX-V: 1\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    out.push((
        "compare",
        "seed-text".into(),
        pair(chunked, &response("X-V: 2\r\n", b"abd")),
    ));
    out
}

/// The seeds are in the tree, byte for byte. `KAGE_WRITE_SEEDS=1 cargo test
/// --test fuzz_corpus` writes them after the tables change.
#[test]
fn seed_corpus_is_committed() {
    let write = std::env::var_os("KAGE_WRITE_SEEDS").is_some();
    for (target, name, bytes) in seeds() {
        let path = fuzz_dir().join("corpus").join(target).join(&name);
        if write {
            fs::create_dir_all(path.parent().expect("corpus dir")).expect("create corpus dir");
            fs::write(&path, &bytes).expect("write seed");
        }
        let committed =
            fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run with KAGE_WRITE_SEEDS=1", path.display()));
        assert_eq!(
            committed,
            bytes,
            "{} is out of date; run with KAGE_WRITE_SEEDS=1",
            path.display()
        );
    }
}

#[test]
fn replay_corpus_and_artifacts() {
    let mut total = 0;
    for (target, run) in TARGETS {
        let mut read = 0;
        for kind in ["corpus", "artifacts"] {
            let dir = fuzz_dir().join(kind).join(target);
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for entry in entries {
                let path = entry.expect("dir entry").path();
                let data = fs::read(&path).expect("read corpus file");
                if panic::catch_unwind(|| run(&data)).is_err() {
                    panic!("fuzz target {target} fails on {}", path.display());
                }
                read += 1;
            }
        }
        assert!(read > 0, "no corpus files for {target}");
        total += read;
    }
    assert!(total >= 40, "only {total} corpus files");
}

/// Regression (fuzz crash 2026-11-23, request_stream and response_stream): a
/// head at the field limit gains a Connection field in the rewrite; the
/// round-trip check must accept that it is over the limit. A request may
/// carry `MAX_REQUEST_FIELDS`, so that its rewrite stays within `MAX_HEADERS`;
/// a response `MAX_HEADERS`.
#[test]
fn head_at_field_limit_round_trips() {
    use kage::http::limits::{MAX_HEADERS, MAX_REQUEST_FIELDS};
    let mut req = b"\0GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    let mut res = b"\0\0HTTP/1.1 200 OK\r\nContent-Length: 0\r\n".to_vec();
    for i in 1..MAX_REQUEST_FIELDS {
        req.extend_from_slice(format!("X-F{i}: v\r\n").as_bytes());
    }
    for i in 1..MAX_HEADERS {
        res.extend_from_slice(format!("X-F{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    res.extend_from_slice(b"\r\n");
    let requests = kage::fuzzing::read_requests(&req[1..], || usize::MAX);
    assert_eq!(
        requests.messages.len(),
        1,
        "a request of exactly MAX_REQUEST_FIELDS fields is accepted"
    );
    kage::fuzzing::request_stream(&req);
    kage::fuzzing::response_stream(&res);
}

/// Regression (fuzz crash 2026-11-23, differential): a head with a bare CR
/// and, before its end, LF LF was named BareCr when whole and BareLf when fed
/// byte by byte. The scanner now checks the same bytes in the same order
/// however the input is split.
#[test]
fn rejection_kind_does_not_depend_on_splits() {
    let head = b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\nY: 1\n\nZ: 2\r\n\r\n";
    let whole = kage::fuzzing::read_requests(head, || usize::MAX);
    let ones = kage::fuzzing::read_requests(head, || 1);
    assert_eq!(whole, ones);
    assert_eq!(whole.end, kage::fuzzing::End::Error(kage::http::ErrorKind::BareLf));
}

/// The hand-written ClientHello seed is one the SNI rules accept.
#[test]
fn tls_seed_is_a_valid_client_hello() {
    use kage::route::{Matcher, Verdict};
    let (_, hello) = cases::ROUTE.iter().find(|(n, _)| *n == "tls_sni").expect("tls seed");
    assert_eq!(Matcher::TlsSni("secure.example".into()).verdict(hello), Verdict::Match);
    assert_eq!(Matcher::TlsSni("*.example".into()).verdict(hello), Verdict::Match);
}
