//! Why a message was rejected, and what to answer.

use std::fmt;

/// A rejected message: what was wrong with it.
///
/// Every kind maps to the status code a server answers a bad *request* with
/// ([`Error::status`]) and to a short reason for logs ([`Error::reason`]). For a
/// bad *response* the proxy answers 502 whatever the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Error {
    kind: ErrorKind,
}

/// The rule a message broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The head is larger than [`MAX_HEAD_LEN`](super::limits::MAX_HEAD_LEN).
    HeadTooLarge,
    /// More header fields than [`MAX_HEADERS`](super::limits::MAX_HEADERS)
    /// (in a request: than [`MAX_REQUEST_FIELDS`](super::limits::MAX_REQUEST_FIELDS)).
    TooManyHeaders,
    /// The request target is longer than [`MAX_TARGET_LEN`](super::limits::MAX_TARGET_LEN).
    TargetTooLong,
    /// A line ends in LF without CR.
    BareLf,
    /// A CR is not followed by LF.
    BareCr,
    /// Too many empty lines before the start line.
    LeadingEmptyLines,
    /// A field line starts with whitespace after another field line (obs-fold).
    ObsFold,
    /// The first field line starts with whitespace.
    WhitespaceBeforeFirstHeader,
    /// Whitespace between a field name and its colon.
    WhitespaceBeforeColon,
    /// A field name is empty or has a character outside `tchar`.
    InvalidHeaderName,
    /// A field value has NUL or another control character.
    InvalidHeaderValue,
    /// The method is not a token.
    InvalidMethod,
    /// The request target is not in a form the method allows, or has a byte
    /// outside visible ASCII (RFC 9112 §3.2: raw bytes of 0x80 and above,
    /// controls, DEL; httparse rejects the last two itself).
    InvalidTarget,
    /// The request line is malformed.
    InvalidRequestLine,
    /// The status line is malformed.
    InvalidStatusLine,
    /// An HTTP version other than 1.0 and 1.1.
    UnsupportedVersion,
    /// An HTTP/1.1 request without Host.
    MissingHost,
    /// More than one Host field.
    DuplicateHost,
    /// A Host value that is not `host[:port]`.
    InvalidHost,
    /// Both Content-Length and Transfer-Encoding.
    ContentLengthWithTransferEncoding,
    /// A Content-Length that is not `1*DIGIT`, overflows, or is a list.
    InvalidContentLength,
    /// Several Content-Length fields with different values.
    ConflictingContentLength,
    /// Transfer-Encoding in an HTTP/1.0 message.
    TransferEncodingInHttp10,
    /// The final transfer coding of a request is not chunked. (A request
    /// listing any coding but chunked is now refused first, with
    /// [`UnsupportedTransferCoding`](Self::UnsupportedTransferCoding).)
    ChunkedNotLast,
    /// `chunked` is applied more than once.
    ChunkedTwice,
    /// A transfer coding this proxy does not know.
    UnknownTransferCoding,
    /// A request with a known transfer coding other than chunked (gzip,
    /// deflate, compress), in one Transfer-Encoding field or several: origins
    /// disagree on such lists (some read only the first field), so only
    /// `chunked` is forwarded, as nginx does (501). Responses may carry them.
    UnsupportedTransferCoding,
    /// A Transfer-Encoding field with a malformed list.
    InvalidTransferEncoding,
    /// A chunk size that is not hex, is missing, or overflows.
    InvalidChunkSize,
    /// A chunk-size line longer than [`MAX_CHUNK_LINE_LEN`](super::limits::MAX_CHUNK_LINE_LEN).
    ChunkLineTooLong,
    /// A malformed chunk extension.
    InvalidChunkExtension,
    /// Chunk data not followed by CRLF.
    MissingChunkCrlf,
    /// A malformed trailer field.
    InvalidTrailer,
    /// Trailers past [`MAX_TRAILERS_LEN`](super::limits::MAX_TRAILERS_LEN) or
    /// [`MAX_TRAILERS`](super::limits::MAX_TRAILERS).
    TrailersTooLarge,
    /// A 101 answer to a request that asked for no upgrade.
    UnrequestedUpgrade,
    /// The peer closed before the message's framing said it ended.
    Truncated,
}

impl Error {
    /// An error of this kind.
    pub const fn new(kind: ErrorKind) -> Self {
        Self { kind }
    }

    /// The rule that was broken.
    pub const fn kind(self) -> ErrorKind {
        self.kind
    }

    /// The status code to answer a request that broke this rule with.
    pub const fn status(self) -> u16 {
        use ErrorKind::*;
        match self.kind {
            HeadTooLarge | TooManyHeaders => 431,
            TargetTooLong => 414,
            UnsupportedVersion => 505,
            UnknownTransferCoding | UnsupportedTransferCoding => 501,
            _ => 400,
        }
    }

    /// A short reason for logs, in lower case, without the status code.
    pub const fn reason(self) -> &'static str {
        use ErrorKind::*;
        match self.kind {
            HeadTooLarge => "head too large",
            TooManyHeaders => "too many header fields",
            TargetTooLong => "request target too long",
            BareLf => "bare LF line terminator",
            BareCr => "bare CR",
            LeadingEmptyLines => "too many empty lines before the start line",
            ObsFold => "obsolete line folding",
            WhitespaceBeforeFirstHeader => "whitespace before the first header field",
            WhitespaceBeforeColon => "whitespace between field name and colon",
            InvalidHeaderName => "invalid character in a field name",
            InvalidHeaderValue => "control character in a field value",
            InvalidMethod => "invalid method",
            InvalidTarget => "invalid request target",
            InvalidRequestLine => "malformed request line",
            InvalidStatusLine => "malformed status line",
            UnsupportedVersion => "unsupported HTTP version",
            MissingHost => "HTTP/1.1 request without Host",
            DuplicateHost => "more than one Host field",
            InvalidHost => "invalid Host value",
            ContentLengthWithTransferEncoding => "both Content-Length and Transfer-Encoding",
            InvalidContentLength => "invalid Content-Length",
            ConflictingContentLength => "conflicting Content-Length values",
            TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 message",
            ChunkedNotLast => "final transfer coding is not chunked",
            ChunkedTwice => "chunked applied more than once",
            UnknownTransferCoding => "unknown transfer coding",
            UnsupportedTransferCoding => "request transfer coding other than chunked",
            InvalidTransferEncoding => "malformed Transfer-Encoding",
            InvalidChunkSize => "invalid chunk size",
            ChunkLineTooLong => "chunk-size line too long",
            InvalidChunkExtension => "invalid chunk extension",
            MissingChunkCrlf => "chunk data not followed by CRLF",
            InvalidTrailer => "invalid trailer field",
            TrailersTooLarge => "trailer section too large",
            UnrequestedUpgrade => "101 Switching Protocols without an upgrade request",
            Truncated => "connection closed before the message ended",
        }
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason(), self.status())
    }
}

impl std::error::Error for Error {}

/// Shorthand for an `Err` of this kind.
pub(crate) fn fail<T>(kind: ErrorKind) -> Result<T, Error> {
    Err(Error::new(kind))
}
