//! The HTTP/1 layer: sans-IO, `&[u8]` in, decisions out.
//!
//! Nothing here touches a socket, mio or `std::net`; the proxy and the fuzz
//! targets drive the same code.
//!
//! - [`RequestHead`] / [`ResponseHead`]: incremental head parsing on httparse.
//!   The end of a head is found by scanning only new bytes; the head is parsed
//!   once, validated strictly (see [`ErrorKind`] for every rule) and kept as
//!   offsets into the caller's buffer.
//! - [`Framing`] and [`BodyDecoder`]: where a body ends (RFC 9112 §6), with
//!   [`ChunkedDecoder`] for the chunked coding, both as pass-through (ranges of
//!   data within the wire bytes) and as decoding.
//! - [`HeadRewrite`], [`write_request`], [`write_response`]: the head as the
//!   next hop should see it.
//! - [`limits`]: every bound, as a named constant.

mod body;
mod chunked;
mod error;
mod fields;
mod head;
pub mod limits;
mod request;
mod response;
mod rewrite;
mod scan;

pub use body::BodyDecoder;
pub use chunked::{ChunkedDecoder, Scanned};
pub use error::{Error, ErrorKind};
pub use head::{Field, Framing, HeadStatus, Span, Version};
pub use request::{Method, RequestHead, TargetForm};
pub use response::{RequestContext, ResponseHead};
/// True when `s` is a valid method token (RFC 9110 §9.1).
pub fn is_method_token(s: &[u8]) -> bool {
    fields::is_token(s)
}

pub use rewrite::{Connection, HeadRewrite, InvalidEdit, write_request, write_response};
