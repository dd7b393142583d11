//! Every bound the HTTP layer enforces, in one place.
//!
//! A message that passes one of these is rejected with the status code its
//! [`ErrorKind`](super::ErrorKind) names; nothing of it is forwarded.

/// Largest request or response head, start line to the empty line included (431).
pub const MAX_HEAD_LEN: usize = 64 * 1024;

/// Most header fields in one head (431), and so the most a forwarded head
/// may carry: the next hop may hold the same limit (Apache's
/// `LimitRequestFields` is 100 by default).
pub const MAX_HEADERS: usize = 100;

/// Fields the request rewrite ([`write_request`](super::write_request)) may
/// add on its own: `Connection`, and `Host` for an absolute-form target of a
/// request that had none (HTTP/1.0).
pub const REWRITE_ADDED_FIELDS: usize = 2;

/// Most header fields in one request (431 past it): room is left for the
/// fields the rewrite adds, so a request the proxy accepts is forwarded with
/// at most [`MAX_HEADERS`] fields (before any field a [`HeadRewrite`](super::HeadRewrite)
/// adds). Responses may carry [`MAX_HEADERS`].
pub const MAX_REQUEST_FIELDS: usize = MAX_HEADERS - REWRITE_ADDED_FIELDS;

/// Longest request target (414).
pub const MAX_TARGET_LEN: usize = 8 * 1024;

/// Longest request line before its end is seen: the target limit plus room for a
/// method and the version. Past it the request is answered 414 without waiting
/// for the rest of the head.
pub const MAX_REQUEST_LINE_LEN: usize = MAX_TARGET_LEN + 64;

/// Most leading empty lines (CRLF) tolerated before a start line (RFC 9112 §2.2).
pub const MAX_LEADING_EMPTY_LINES: usize = 8;

/// Most hex digits in a chunk size, leading zeros included (16 fill a `u64`).
pub const MAX_CHUNK_SIZE_DIGITS: usize = 16;

/// Longest chunk-size line, extensions included, CRLF excluded.
pub const MAX_CHUNK_LINE_LEN: usize = 4 * 1024;

/// Longest trailer field line, CRLF excluded.
pub const MAX_TRAILER_LINE_LEN: usize = 8 * 1024;

/// Most bytes of trailer section, CRLFs included.
pub const MAX_TRAILERS_LEN: usize = 16 * 1024;

/// Most trailer fields.
pub const MAX_TRAILERS: usize = 32;

/// Most transfer codings listed across all Transfer-Encoding fields.
pub const MAX_TRANSFER_CODINGS: usize = 8;
