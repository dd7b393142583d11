//! # kage: an HTTP/1 shadow proxy and content-aware TCP router
//!
//! Every client request goes to the **master** (production) backend, whose
//! response streams straight back to the client. Selected requests are also
//! replayed to **shadow** backends (new code); their responses are captured,
//! never sent to the client, and compared with the master's. A shadow may be
//! down, slow, broken or hostile: the client must not notice.
//!
//! This page is the living picture of the design.
//!
//! ## Layers
//!
//! One direction of imports: the upper layers use the lower ones.
//!
//! ```text
//! main.rs (CLI)      flags -> config; env_logger; runs the loop; signals
//! proxy/ route/      (coming) mio event loop, sessions, splice, the TCP router
//! http/ (sans-IO)    heads on httparse, framing, chunked, head rewrite
//! ```
//!
//! [`http`] never imports mio or `std::net`: bytes in, decisions out, so the
//! proxy, the tests and `cargo fuzz` drive the same code.
//!
//! ## Parsing a request
//!
//! Bytes are appended to a buffer as they arrive. [`http::RequestHead::parse`]
//! looks for the end of the head in the new bytes only (memchr for LF, checking
//! the CR before it, so a bare LF is rejected on the way and a `\r\n\r\n` split
//! across reads is found); once the head is complete it is parsed once by
//! httparse and validated: framing (Content-Length, Transfer-Encoding), Host,
//! target form, version. The result is a set of offsets into the caller's
//! buffer, with no allocation per field. Anything ambiguous is rejected with
//! the status code to answer ([`http::Error::status`]) and nothing of it is
//! forwarded.
//!
//! The body then follows its [`http::Framing`] through a
//! [`http::BodyDecoder`], which reports which input bytes are data and where
//! the message ends, so bytes can be forwarded unchanged.
//!
//! Heads are re-serialized per destination with [`http::write_request`]:
//! hop-by-hop fields dropped, the proxy's own Connection field, per-backend
//! edits ([`http::HeadRewrite`]).
//!
//! ## Fuzzing
//!
//! [`fuzzing`] holds the bodies of the fuzz targets under `fuzz/`; `tests/`
//! replays the committed corpus through the same functions on plain
//! `cargo test`.

#![warn(missing_docs)]

pub mod buffer;
pub mod cli;
pub mod fuzzing;
pub mod http;
pub mod net;
pub mod proxy;
pub mod server;
