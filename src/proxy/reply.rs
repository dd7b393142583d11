//! Answers the proxy writes itself.

/// Appends a complete error response that closes the connection.
pub(crate) fn error(status: u16, detail: &str, out: &mut Vec<u8>) {
    let body_len = body_len(detail);
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {body_len}\r\nConnection: close\r\n\r\n",
        phrase(status)
    );
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(detail.as_bytes());
    out.push(b'\n');
}

/// The body length of [`error`]'s answer with `detail`.
pub(crate) fn body_len(detail: &str) -> usize {
    detail.len() + 1
}

/// The standard reason phrase of the codes the proxy sends.
fn phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}
