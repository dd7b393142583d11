//! The server name of a TLS ClientHello, read from the first bytes of a
//! connection without decrypting anything.

/// Most bytes of handshake message this reader looks into (one record).
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;

/// What the bytes so far say about a server name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sni<'a> {
    /// Not (the start of) a TLS ClientHello.
    NotTls,
    /// A ClientHello so far; more bytes are needed.
    NeedMore,
    /// A complete ClientHello, with this `host_name`, if it sent one.
    Name(Option<&'a [u8]>),
}

/// Reads the `server_name` extension (RFC 6066) of a ClientHello in the
/// first TLS record of `buf`. A ClientHello split over several records is
/// reported as `NotTls` (rare: browsers send theirs in one record).
pub fn server_name(buf: &[u8]) -> Sni<'_> {
    let mut r = Reader(buf);
    // Record: content type 22 (handshake), version, length.
    match r.u8() {
        None => return Sni::NeedMore,
        Some(22) => {}
        Some(_) => return Sni::NotTls,
    }
    let Some(major) = r.u8() else { return Sni::NeedMore };
    if major != 3 {
        return Sni::NotTls;
    }
    let (Some(_minor), Some(record_len)) = (r.u8(), r.u16()) else {
        return Sni::NeedMore;
    };
    let record_len = usize::from(record_len);
    if !(4..=MAX_CLIENT_HELLO).contains(&record_len) {
        return Sni::NotTls;
    }
    let Some(record) = r.take(record_len) else {
        return Sni::NeedMore;
    };
    let mut h = Reader(record);
    // Handshake: type 1 (ClientHello), 24-bit length within the record.
    if h.u8() != Some(1) {
        return Sni::NotTls;
    }
    let (Some(hi), Some(lo)) = (h.u8(), h.u16()) else {
        return Sni::NotTls;
    };
    let Some(hello) = h.take((usize::from(hi) << 16) | usize::from(lo)) else {
        return Sni::NotTls;
    };
    match hello_server_name(hello) {
        Some(name) => Sni::Name(name),
        None => Sni::NotTls,
    }
}

/// The host name in a ClientHello body; `None` when malformed.
fn server_name_ext(ext: &[u8]) -> Option<Option<&[u8]>> {
    let mut e = Reader(ext);
    let list_len = usize::from(e.u16()?);
    let mut list = Reader(e.take(list_len)?);
    while !list.0.is_empty() {
        let kind = list.u8()?;
        let name_len = usize::from(list.u16()?);
        let name = list.take(name_len)?;
        if kind == 0 {
            return Some(Some(name));
        }
    }
    Some(None)
}

fn hello_server_name(hello: &[u8]) -> Option<Option<&[u8]>> {
    let mut c = Reader(hello);
    c.take(2 + 32)?; // client_version, random
    let session = usize::from(c.u8()?);
    c.take(session)?;
    let suites = usize::from(c.u16()?);
    c.take(suites)?;
    let compression = usize::from(c.u8()?);
    c.take(compression)?;
    if c.0.is_empty() {
        return Some(None); // no extensions at all
    }
    let exts_len = usize::from(c.u16()?);
    let mut exts = Reader(c.take(exts_len)?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data_len = usize::from(exts.u16()?);
        let data = exts.take(data_len)?;
        if kind == 0 {
            return server_name_ext(data);
        }
    }
    Some(None)
}

/// Big-endian reads that never index past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ClientHello record naming `host` (or none).
    pub(crate) fn client_hello(host: Option<&str>) -> Vec<u8> {
        let mut ext = Vec::new();
        if let Some(h) = host {
            let mut list = vec![0u8];
            list.extend_from_slice(&(h.len() as u16).to_be_bytes());
            list.extend_from_slice(h.as_bytes());
            let mut sni = (list.len() as u16).to_be_bytes().to_vec();
            sni.extend_from_slice(&list);
            ext.extend_from_slice(&[0, 0]);
            ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
            ext.extend_from_slice(&sni);
        }
        // A second, unrelated extension (supported_versions) after it.
        ext.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
        let mut hello = vec![3, 3];
        hello.extend_from_slice(&[7u8; 32]);
        hello.push(0);
        hello.extend_from_slice(&[0, 2, 0x13, 0x01]);
        hello.extend_from_slice(&[1, 0]);
        hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        hello.extend_from_slice(&ext);
        let mut hs = vec![1, 0];
        hs.extend_from_slice(&(hello.len() as u16).to_be_bytes());
        hs.extend_from_slice(&hello);
        let mut record = vec![22, 3, 1];
        record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        record.extend_from_slice(&hs);
        record
    }

    #[test]
    fn reads_the_name_at_every_split() {
        let wire = client_hello(Some("secure.example"));
        for cut in 0..wire.len() {
            assert_eq!(server_name(&wire[..cut]), Sni::NeedMore, "cut {cut}");
        }
        assert_eq!(server_name(&wire), Sni::Name(Some(&b"secure.example"[..])));
        assert_eq!(server_name(&client_hello(None)), Sni::Name(None));
    }

    #[test]
    fn rejects_what_is_not_a_client_hello() {
        assert_eq!(server_name(b"GET / HTTP/1.1\r\n"), Sni::NotTls);
        assert_eq!(server_name(&[22, 2, 0]), Sni::NotTls);
        let mut server_hello = client_hello(Some("a"));
        server_hello[5] = 2;
        assert_eq!(server_name(&server_hello), Sni::NotTls);
        let mut lying = client_hello(Some("a"));
        lying[8] = 0xff; // handshake length past the record
        assert_eq!(server_name(&lying), Sni::NotTls);
    }
}
