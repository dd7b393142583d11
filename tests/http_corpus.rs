//! Every corpus case, parsed whole, split at every byte and fed one byte at a
//! time, gives the outcome the table says.

mod cases;

use cases::{CHUNKED, Case, End, REQUESTS, RESPONSES, Want};
use kage::fuzzing::{Outcome, context, read_requests, read_responses};
use kage::http::Error;

fn run(case: &Case, request: bool, next_len: impl FnMut() -> usize) -> Outcome {
    if request {
        read_requests(case.wire, next_len)
    } else {
        read_responses(case.wire, context(case.ctx), next_len)
    }
}

/// The outcome, after checking that every way of splitting the input gives it.
fn outcome(case: &Case, request: bool) -> Outcome {
    let whole = run(case, request, || usize::MAX);
    for cut in 1..case.wire.len() {
        let mut first = true;
        let split = run(
            case,
            request,
            || if std::mem::take(&mut first) { cut } else { usize::MAX },
        );
        assert_eq!(split, whole, "{}: split at {cut} differs from whole", case.name);
    }
    assert_eq!(
        run(case, request, || 1),
        whole,
        "{}: byte at a time differs from whole",
        case.name
    );
    whole
}

fn check(cases: &[Case], request: bool) {
    for case in cases {
        let got = outcome(case, request);
        match case.want {
            Want::Ok(msgs, end) => {
                let seen: Vec<_> = got.messages.iter().map(|m| (m.framing, m.body.as_slice())).collect();
                assert_eq!(seen, msgs, "{}: messages", case.name);
                assert_eq!(got.end, end, "{}: end", case.name);
            }
            Want::Err(before, status, kind) => {
                assert_eq!(got.messages.len(), before, "{}: messages before the error", case.name);
                assert_eq!(got.end, End::Error(kind), "{}: rejection", case.name);
                if request {
                    assert_eq!(Error::new(kind).status(), status, "{}: status", case.name);
                }
            }
        }
    }
}

#[test]
fn corpus_is_large_enough() {
    assert!(REQUESTS.len() >= 60, "{} request cases", REQUESTS.len());
    assert!(RESPONSES.len() >= 30, "{} response cases", RESPONSES.len());
    // Names become seed file names: unique within each table.
    for table in [REQUESTS, RESPONSES] {
        let mut names: Vec<_> = table.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), table.len(), "duplicate case names");
    }
}

#[test]
fn requests() {
    check(REQUESTS, true);
}

#[test]
fn responses() {
    check(RESPONSES, false);
}

#[test]
fn chunked_seeds_agree() {
    for (_, wire) in CHUNKED {
        let mut data = vec![7u8];
        data.extend_from_slice(wire);
        // Panics on disagreement between pass-through and decoding, or splits.
        kage::fuzzing::chunked(&data);
    }
}

fn head_of(name: &str, request: bool, index: usize) -> String {
    let table = if request { REQUESTS } else { RESPONSES };
    let case = table
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name}"));
    String::from_utf8_lossy(&run(case, request, || usize::MAX).messages[index].head).into_owned()
}

#[test]
fn rewritten_heads() {
    assert_eq!(
        head_of("hop_by_hop_named", true, 0),
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
        "hop-by-hop fields and the ones Connection names are dropped"
    );
    assert_eq!(
        head_of("absolute_form", true, 0),
        "GET /p?q HTTP/1.1\r\nHost: a.example:8080\r\nConnection: keep-alive\r\n\r\n",
        "absolute form becomes origin form with the Host it implies"
    );
    assert_eq!(
        head_of("absolute_form_no_path", true, 0),
        "GET / HTTP/1.1\r\nHost: a.example\r\nConnection: keep-alive\r\n\r\n"
    );
    assert_eq!(
        head_of("absolute_form_query_only", true, 0),
        "GET /?x=1 HTTP/1.1\r\nHost: a.example\r\nConnection: keep-alive\r\n\r\n"
    );
    assert_eq!(
        head_of("connection_names_content_length", true, 0),
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n",
        "a Connection field cannot strip the framing fields or Host"
    );
    assert_eq!(
        head_of("hop_by_hop", false, 0),
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
    );
    assert_eq!(
        head_of("leading_empty_lines", true, 0),
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
    );
}
