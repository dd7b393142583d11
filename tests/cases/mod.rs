//! The HTTP corpus: wire bytes and what must come of them. Shared by the
//! corpus tests and the fuzz seed corpus (which is made from it).
#![allow(dead_code)]

use kage::http::ErrorKind as K;
use kage::http::Framing::{self, Chunked, Empty, Length, Tunnel, UntilClose};

pub use kage::fuzzing::End;

/// What a case must give.
pub enum Want {
    /// These messages (framing, decoded body), then this end.
    Ok(&'static [(Framing, &'static [u8])], End),
    /// This many good messages, then a rejection with this status and rule.
    Err(usize, u16, K),
}

/// A named input.
pub struct Case {
    pub name: &'static str,
    pub wire: &'static [u8],
    /// For responses: the request context selector of `kage::fuzzing::context`
    /// (0 GET, 1 HEAD, 2 CONNECT, 3 POST; +4 with upgrade requested).
    pub ctx: u8,
    pub want: Want,
}

const fn ok(name: &'static str, wire: &'static [u8], msgs: &'static [(Framing, &'static [u8])], end: End) -> Case {
    Case {
        name,
        wire,
        ctx: 0,
        want: Want::Ok(msgs, end),
    }
}

const fn err(name: &'static str, wire: &'static [u8], status: u16, kind: K) -> Case {
    Case {
        name,
        wire,
        ctx: 0,
        want: Want::Err(0, status, kind),
    }
}

const fn rok(
    name: &'static str,
    ctx: u8,
    wire: &'static [u8],
    msgs: &'static [(Framing, &'static [u8])],
    end: End,
) -> Case {
    Case {
        name,
        wire,
        ctx,
        want: Want::Ok(msgs, end),
    }
}

const fn rerr(name: &'static str, ctx: u8, wire: &'static [u8], kind: K) -> Case {
    Case {
        name,
        wire,
        ctx,
        want: Want::Err(0, 502, kind),
    }
}

const GET: &[(Framing, &[u8])] = &[(Empty, b"")];

pub const REQUESTS: &[Case] = &[
    // Valid requests.
    ok("get", b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n", GET, End::Clean),
    ok("get_browser", b"GET /index.html?q=1 HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0\r\nAccept: text/html,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nCookie: a=b; c=d\r\n\r\n", GET, End::Clean),
    ok("leading_empty_lines", b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", GET, End::Clean),
    ok("http10_no_host_closes", b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n", GET, End::Closed),
    ok("http10_keep_alive", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &[(Empty, b""), (Empty, b"")], End::Clean),
    ok("post_length", b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", &[(Length(5), b"hello")], End::Clean),
    ok("post_length_zero", b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", GET, End::Clean),
    ok("post_length_leading_zeros", b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n1234567", &[(Length(7), b"1234567")], End::Clean),
    ok("post_length_repeated_same", b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", &[(Length(3), b"abc")], End::Clean),
    ok("post_chunked", b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=\"v\"\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", &[(Chunked, b"hello world")], End::Clean),
    // Framing forwarded in one canonical field (see rewritten_heads).
    ok("te_leading_comma", b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\nX-After: 1\r\n\r\n1\r\nx\r\n0\r\n\r\n", &[(Chunked, b"x")], End::Clean),
    ok("te_trailing_comma", b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n", &[(Chunked, b"")], End::Clean),
    ok("te_space_comma", b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  , chunked , \r\n\r\n0\r\n\r\n", &[(Chunked, b"")], End::Clean),
    ok("cl_octal_looking", b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 010\r\n\r\n0123456789", &[(Length(10), b"0123456789")], End::Clean),
    ok("cl_leading_zeros_003", b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 003\r\n\r\nabc", &[(Length(3), b"abc")], End::Clean),
    ok("cl_double_zero", b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 00\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &[(Empty, b""), (Empty, b"")], End::Clean),
    ok("cl_repeated_zeros_between", b"POST /f HTTP/1.1\r\nHost: a\r\ncontent-length: 03\r\nX-Between: 1\r\nContent-Length: 3\r\n\r\nabc", &[(Length(3), b"abc")], End::Clean),
    ok("te_case_and_empty_items", b"POST /c HTTP/1.1\r\nHost: a\r\ntransfer-encoding: , CHUNKED\r\n\r\n1\r\nx\r\n0\r\n\r\n", &[(Chunked, b"x")], End::Clean),
    ok("pipeline_three", b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n", &[(Empty, b""), (Empty, b""), (Empty, b"")], End::Clean),
    ok("pipeline_mixed_bodies", b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nabPOST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\ncd\r\n0\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n", &[(Length(2), b"ab"), (Chunked, b"cd"), (Empty, b"")], End::Clean),
    ok("connection_close_stops", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGARBAGE AFTER CLOSE", GET, End::Closed),
    ok("absolute_form", b"GET http://a.example:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n", GET, End::Clean),
    ok("absolute_form_no_path", b"GET http://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n", GET, End::Clean),
    ok("absolute_form_query_only", b"GET https://a.example?x=1 HTTP/1.1\r\nHost: a.example\r\n\r\n", GET, End::Clean),
    ok("connect", b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", GET, End::Closed),
    ok("options_asterisk", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", GET, End::Clean),
    ok("expect_continue", b"PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\ndata", &[(Length(4), b"data")], End::Clean),
    ok("upgrade_websocket", b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", GET, End::Closed),
    ok("hop_by_hop_named", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\n\r\n", GET, End::Clean),
    ok("connection_names_content_length", b"POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, Transfer-Encoding, Host\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: a\r\n\r\n", &[(Length(3), b"abc"), (Empty, b"")], End::Clean),
    ok("lowercase_method", b"get / HTTP/1.1\r\nHost: a\r\n\r\n", GET, End::Clean),
    ok("obs_text_value", b"GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9 \xff\r\n\r\n", GET, End::Clean),
    ok("empty_value", b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Spaces:    \r\n\r\n", GET, End::Clean),
    ok("ows_trimmed", b"GET / HTTP/1.1\r\nHost:\t a \t\r\n\r\n", GET, End::Clean),
    ok("host_port_ipv6", b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", GET, End::Clean),
    ok("host_empty", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", GET, End::Clean),
    ok("partial_head", b"GET / HTTP/1.1\r\nHost: a\r\n", &[], End::Partial),
    ok("partial_body", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc", &[], End::Partial),
    ok("partial_chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", &[], End::Partial),
    ok("chunk_ext_bws", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3 ; a = b\r\nxyz\r\n0\r\n\r\n", &[(Chunked, b"xyz")], End::Clean),
    ok("max_content_length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\nab", &[], End::Partial),
    ok("pipeline_then_partial", b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHo", GET, End::Partial),
    // Rejected requests: nothing of them may be forwarded.
    err("cl_and_te", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, K::ContentLengthWithTransferEncoding),
    err("te_and_cl", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", 400, K::ContentLengthWithTransferEncoding),
    err("te_gzip_only", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501, K::UnsupportedTransferCoding),
    err("te_chunked_then_gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501, K::UnsupportedTransferCoding),
    err("post_gzip_chunked", b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 501, K::UnsupportedTransferCoding),
    err("te_split_fields", b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, K::UnsupportedTransferCoding),
    err("te_deflate_empty_items", b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , deflate,, chunked\r\n\r\n0\r\n\r\n", 501, K::UnsupportedTransferCoding),
    err("te_only_commas", b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , ,\r\n\r\n0\r\n\r\n", 400, K::InvalidTransferEncoding),
    err("te_http10_gzip", b"POST / HTTP/1.0\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400, K::TransferEncodingInHttp10),
    err("target_utf8", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400, K::InvalidTarget),
    err("target_not_utf8", b"GET /a\xffb HTTP/1.1\r\nHost: a\r\n\r\n", 400, K::InvalidTarget),
    err("target_absolute_utf8", b"GET http://a.example/\xe2\x82\xac HTTP/1.1\r\nHost: a.example\r\n\r\n", 400, K::InvalidTarget),
    err("target_control", b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", 400, K::InvalidTarget),
    err("target_tab", b"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", 400, K::InvalidTarget),
    err("target_del", b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", 400, K::InvalidTarget),
    err("target_nul", b"GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", 400, K::InvalidTarget),
    err("te_chunked_twice", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400, K::ChunkedTwice),
    err("te_chunked_twice_fields", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400, K::ChunkedTwice),
    err("te_identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501, K::UnknownTransferCoding),
    err("te_unknown", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo, chunked\r\n\r\n", 501, K::UnknownTransferCoding),
    err("te_with_params", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", 400, K::InvalidTransferEncoding),
    err("te_empty", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400, K::InvalidTransferEncoding),
    err("te_in_http10", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, K::TransferEncodingInHttp10),
    err("cl_negative", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, K::InvalidContentLength),
    err("cl_plus", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400, K::InvalidContentLength),
    err("cl_list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400, K::InvalidContentLength),
    err("cl_overflow", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", 400, K::InvalidContentLength),
    err("cl_hex", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400, K::InvalidContentLength),
    err("cl_empty", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400, K::InvalidContentLength),
    err("cl_inner_space", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n", 400, K::InvalidContentLength),
    err("cl_conflict", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400, K::ConflictingContentLength),
    err("bare_lf_request_line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400, K::BareLf),
    err("bare_lf_field", b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400, K::BareLf),
    err("bare_lf_end", b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400, K::BareLf),
    err("bare_cr_value", b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400, K::BareCr),
    err("bare_cr_line_start", b"GET / HTTP/1.1\r\n\rHost: a\r\n\r\n", 400, K::BareCr),
    err("bare_cr_request_line", b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400, K::BareCr),
    err("obs_fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n", 400, K::ObsFold),
    err("obs_fold_tab", b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n\ttwo\r\n\r\n", 400, K::ObsFold),
    err("space_before_first_header", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, K::WhitespaceBeforeFirstHeader),
    err("space_before_colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, K::WhitespaceBeforeColon),
    err("tab_before_colon", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 3\r\n\r\nabc", 400, K::WhitespaceBeforeColon),
    err("nul_in_value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400, K::InvalidHeaderValue),
    err("ctl_in_value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400, K::InvalidHeaderValue),
    err("del_in_value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400, K::InvalidHeaderValue),
    err("bad_method_token", b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, K::InvalidMethod),
    err("bad_header_name", b"GET / HTTP/1.1\r\nHo[st: a\r\n\r\n", 400, K::InvalidHeaderName),
    err("empty_header_name", b"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 400, K::InvalidHeaderName),
    err("missing_host", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400, K::MissingHost),
    err("two_hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, K::DuplicateHost),
    err("two_hosts_http10", b"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", 400, K::DuplicateHost),
    err("host_with_space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, K::InvalidHost),
    err("host_with_slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, K::InvalidHost),
    err("host_userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400, K::InvalidHost),
    err("http20", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, K::UnsupportedVersion),
    err("http12", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505, K::UnsupportedVersion),
    err("not_http", b"GET / HTTX/1.1\r\nHost: a\r\n\r\n", 400, K::InvalidRequestLine),
    err("http09", b"GET /\r\n\r\n", 400, K::InvalidRequestLine),
    err("double_space", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, K::InvalidRequestLine),
    err("trailing_space_version", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, K::InvalidRequestLine),
    err("space_in_target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400, K::InvalidRequestLine),
    err("asterisk_with_get", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, K::InvalidTarget),
    err("relative_target", b"GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400, K::InvalidTarget),
    err("absolute_ftp", b"GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400, K::InvalidTarget),
    err("absolute_userinfo", b"GET http://u:p@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, K::InvalidTarget),
    err("absolute_no_host", b"GET http:///p HTTP/1.1\r\nHost: a\r\n\r\n", 400, K::InvalidTarget),
    err("connect_no_port", b"CONNECT a.example HTTP/1.1\r\nHost: a.example\r\n\r\n", 400, K::InvalidTarget),
    err("connect_origin_form", b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 400, K::InvalidTarget),
    err("chunk_size_invalid", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n", 400, K::InvalidChunkSize),
    err("chunk_size_overflow", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n", 400, K::InvalidChunkSize),
    err("chunk_bare_lf", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", 400, K::BareLf),
    err("chunk_missing_crlf", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n", 400, K::MissingChunkCrlf),
    err("chunk_space_after_size", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n", 400, K::InvalidChunkSize),
    err("chunk_trailer_fold", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n 2\r\n\r\n", 400, K::InvalidTrailer),
    err("too_many_empty_lines", b"\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, K::LeadingEmptyLines),
    Case { name: "good_then_bad", wire: b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", ctx: 0, want: Want::Err(1, 400, K::ConflictingContentLength) },
    Case { name: "body_then_smuggle_attempt", wire: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcdGET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", ctx: 0, want: Want::Err(1, 400, K::ContentLengthWithTransferEncoding) },
];

pub const RESPONSES: &[Case] = &[
    rok("length", 0, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", &[(Length(5), b"hello")], End::Clean),
    rok("chunked_trailers", 0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5\r\npedia\r\n0\r\nExpires: never\r\n\r\n", &[(Chunked, b"wikipedia")], End::Clean),
    rok("until_close", 0, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this until EOF", &[(UntilClose, b"all of this until EOF")], End::Closed),
    rok("http10_until_close", 0, b"HTTP/1.0 200 OK\r\n\r\nold", &[(UntilClose, b"old")], End::Closed),
    rok("te_gzip_until_close", 0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b", &[(UntilClose, b"\x1f\x8b")], End::Closed),
    rok("no_reason", 0, b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", &[(Empty, b"")], End::Clean),
    rok("reason_obs_text", 0, b"HTTP/1.1 200 D\xc3\xa9j\xc3\xa0 vu\r\nContent-Length: 0\r\n\r\n", &[(Empty, b"")], End::Clean),
    rok("no_content_then_next", 0, b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", &[(Empty, b""), (Length(2), b"ok")], End::Clean),
    rok("not_modified_with_length", 0, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\nETag: \"x\"\r\n\r\n", &[(Empty, b"")], End::Clean),
    rok("head_with_length", 1, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", &[(Empty, b"")], End::Clean),
    rok("head_chunked", 1, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &[(Empty, b"")], End::Clean),
    rok("connect_tunnel", 2, b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x01", &[(Tunnel, b"")], End::Closed),
    rok("connect_refused_with_body", 2, b"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 3\r\n\r\nno!", &[(Length(3), b"no!")], End::Clean),
    rok("continue_then_final", 3, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", &[(Empty, b""), (Length(2), b"ok")], End::Clean),
    rok("early_hints", 0, b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &[(Empty, b""), (Empty, b"")], End::Clean),
    rok("switching_protocols", 4, b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello", &[(Tunnel, b"")], End::Closed),
    rok("connection_close", 0, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nokHTTP/1.1 200 OK\r\n", &[(Length(2), b"ok")], End::Closed),
    rok("http10_keep_alive", 0, b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\na", &[(Length(1), b"a")], End::Clean),
    rok("pipeline_two", 0, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n", &[(Length(1), b"a"), (Chunked, b"b")], End::Clean),
    rok("hop_by_hop", 0, b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\nKeep-Alive: timeout=5\r\nX-Internal: 1\r\nContent-Length: 0\r\n\r\n", &[(Empty, b"")], End::Clean),
    rok("truncated_length", 0, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", &[], End::Partial),
    rok("truncated_chunked", 0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", &[], End::Partial),
    rok("partial_head", 0, b"HTTP/1.1 200 OK\r\nContent-", &[], End::Partial),
    rerr("unrequested_upgrade", 0, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", K::UnrequestedUpgrade),
    rerr("cl_and_te", 0, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", K::ContentLengthWithTransferEncoding),
    rerr("te_in_http10", 0, b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", K::TransferEncodingInHttp10),
    rerr("cl_conflict", 0, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", K::ConflictingContentLength),
    rerr("cl_invalid", 0, b"HTTP/1.1 200 OK\r\nContent-Length: 1a\r\n\r\n", K::InvalidContentLength),
    rerr("te_chunked_twice", 0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", K::ChunkedTwice),
    rerr("te_unknown", 0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: br, chunked\r\n\r\n", K::UnknownTransferCoding),
    rerr("bare_lf", 0, b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", K::BareLf),
    rerr("bare_cr", 0, b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", K::BareCr),
    rerr("obs_fold", 0, b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", K::ObsFold),
    rerr("space_before_colon", 0, b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", K::WhitespaceBeforeColon),
    rerr("ctl_in_value", 0, b"HTTP/1.1 200 OK\r\nX: \x02\r\n\r\n", K::InvalidHeaderValue),
    rerr("status_four_digits", 0, b"HTTP/1.1 2000 OK\r\n\r\n", K::InvalidStatusLine),
    rerr("status_below_100", 0, b"HTTP/1.1 099 Low\r\n\r\n", K::InvalidStatusLine),
    rerr("status_above_599", 0, b"HTTP/1.1 600 High\r\n\r\n", K::InvalidStatusLine),
    rerr("ctl_in_reason", 0, b"HTTP/1.1 200 O\x01K\r\n\r\n", K::InvalidStatusLine),
    rerr("http2_version", 0, b"HTTP/2.0 200 OK\r\n\r\n", K::UnsupportedVersion),
    rerr("not_http", 0, b"ICY 200 OK\r\n\r\n", K::InvalidStatusLine),
    rerr("chunk_size_invalid", 0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", K::InvalidChunkSize),
    rerr("chunk_missing_crlf", 0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", K::MissingChunkCrlf),
];

/// Chunked bodies alone, for the chunked fuzz target's seeds.
pub const CHUNKED: &[(&str, &[u8])] = &[
    ("empty", b"0\r\n\r\n"),
    ("two_chunks", b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    ("hex_upper_lower", b"A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n"),
    ("extensions", b"5;a=b;c=\"q\\\"d\"\r\nhello\r\n0;end\r\n\r\n"),
    ("extension_bws", b"5 ; a = b\r\nhello\r\n0\r\n\r\n"),
    ("trailers", b"3\r\nabc\r\n0\r\nX-A: 1\r\nX-B: two words\r\n\r\n"),
    ("leading_zeros", b"0005\r\nhello\r\n0000\r\n\r\n"),
    ("then_next_message", b"1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n"),
    ("bare_lf", b"5\nhello\r\n0\r\n\r\n"),
    ("bare_cr", b"5\r\nhello\r0\r\n\r\n"),
    ("overflow", b"10000000000000000\r\n"),
    ("missing_crlf", b"2\r\nabc\r\n"),
    ("bad_trailer", b"0\r\n X: 1\r\n\r\n"),
    ("truncated", b"ff\r\nshort"),
];

/// First bytes of connections, for the route_rules fuzz target's seeds.
pub const ROUTE: &[(&str, &[u8])] = &[
    ("git", b"003egit-upload-pack /project.git\0host=example.com\0"),
    ("http_host", b"GET / HTTP/1.1\r\nHost: app.example:8080\r\n\r\n"),
    ("http_api", b"POST /api/items HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
    ("ping", b"PING\r\n"),
    ("ssh", b"SSH-2.0-OpenSSH_9.2\r\n"),
    // A TLS 1.3 ClientHello naming secure.example, as a client sends it.
    ("tls_sni", b"\x16\x03\x01\x00\x51\x01\x00\x00\x4d\x03\x03AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\x00\x00\x02\x13\x01\x01\x00\x00\x22\x00\x00\x00\x13\x00\x11\x00\x00\x0esecure.example\x00\x2b\x00\x03\x02\x03\x04\x00\x00\x00\x00"),
    // The same ClientHello split after its handshake header into two records.
    ("tls_sni_split", b"\x16\x03\x01\x00\x04\x01\x00\x00\x4d\x16\x03\x01\x00\x4d\x03\x03AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\x00\x00\x02\x13\x01\x01\x00\x00\x22\x00\x00\x00\x13\x00\x11\x00\x00\x0esecure.example\x00\x2b\x00\x03\x02\x03\x04\x00\x00\x00\x00"),
];
