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
    // One canonical framing field, in place of the first, name as spelled.
    for (name, framing) in [
        ("te_leading_comma", "Transfer-Encoding: chunked\r\nX-After: 1"),
        ("te_trailing_comma", "Transfer-Encoding: chunked"),
        ("te_space_comma", "Transfer-Encoding: chunked"),
        ("te_case_and_empty_items", "transfer-encoding: chunked"),
        ("post_chunked", "Transfer-Encoding: chunked"),
        ("cl_octal_looking", "Content-Length: 10"),
        ("cl_leading_zeros_003", "Content-Length: 3"),
        ("post_length_leading_zeros", "Content-Length: 7"),
        ("cl_double_zero", "Content-Length: 0"),
        ("post_length_zero", "Content-Length: 0"),
        ("post_length", "Content-Length: 5"),
        ("post_length_repeated_same", "Content-Length: 3"),
        ("cl_repeated_zeros_between", "content-length: 3\r\nX-Between: 1"),
    ] {
        let case = REQUESTS.iter().find(|c| c.name == name).expect("case");
        let method_target = case.wire.split(|&b| b == b' ').take(2).collect::<Vec<_>>().join(&b' ');
        let want = format!(
            "{} HTTP/1.1\r\nHost: a\r\n{framing}\r\nConnection: keep-alive\r\n\r\n",
            String::from_utf8_lossy(&method_target)
        );
        assert_eq!(head_of(name, true, 0), want, "{name}: framing on the wire");
    }
    assert_eq!(
        head_of("cl_double_zero", true, 1),
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
    );
    assert_eq!(
        head_of("leading_empty_lines", true, 0),
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
    );
}

/// A request with `fields` header fields (Host, if any, counted), whole.
fn with_fields(start_line: &str, host: bool, fields: usize) -> &'static [u8] {
    let mut wire = format!("{start_line}\r\n");
    if host {
        wire.push_str("Host: a\r\n");
    }
    for i in usize::from(host)..fields {
        wire.push_str(&format!("X-F{i}: v\r\n"));
    }
    wire.push_str("\r\n");
    Box::leak(wire.into_bytes().into_boxed_slice())
}

/// Field lines of a head as written for the next hop.
fn field_lines(head: &[u8]) -> usize {
    head.iter().filter(|&&b| b == b'\n').count() - 2
}

/// The field-count limit, exactly at and one past it, split at every byte:
/// what the proxy accepts is forwarded with at most MAX_HEADERS fields.
#[test]
fn field_count_boundary() {
    use kage::http::ErrorKind;
    use kage::http::limits::{MAX_HEADERS, MAX_REQUEST_FIELDS};
    let case = |name, wire| Case {
        name,
        wire,
        ctx: 0,
        want: Want::Ok(&[], End::Clean),
    };
    // At the limit: accepted, forwarded with the Connection field added.
    let at = case("at_limit", with_fields("GET / HTTP/1.1", true, MAX_REQUEST_FIELDS));
    let got = outcome(&at, true);
    assert_eq!(got.end, End::Clean);
    assert_eq!(got.messages.len(), 1);
    assert_eq!(field_lines(&got.messages[0].head), MAX_REQUEST_FIELDS + 1);
    assert!(
        got.messages[0]
            .head
            .ends_with(b"X-F97: v\r\nConnection: keep-alive\r\n\r\n")
    );
    // HTTP/1.0, absolute form, no Host: the rewrite adds Host and Connection.
    let abs = case(
        "at_limit_absolute",
        with_fields("GET http://h.example/p HTTP/1.0", false, MAX_REQUEST_FIELDS),
    );
    let got = outcome(&abs, true);
    assert_eq!(got.end, End::Closed);
    assert_eq!(field_lines(&got.messages[0].head), MAX_HEADERS);
    assert!(
        got.messages[0]
            .head
            .starts_with(b"GET /p HTTP/1.0\r\nHost: h.example\r\nX-F0: v\r\n")
    );
    // One past it, and at the parser's own array size: 431, nothing forwarded.
    for fields in [MAX_REQUEST_FIELDS + 1, MAX_HEADERS, MAX_HEADERS + 1] {
        let over = case("over_limit", with_fields("GET / HTTP/1.1", true, fields));
        let got = outcome(&over, true);
        assert!(got.messages.is_empty(), "{fields} fields");
        assert_eq!(got.end, End::Error(ErrorKind::TooManyHeaders), "{fields} fields");
        assert_eq!(Error::new(ErrorKind::TooManyHeaders).status(), 431);
    }
}
