//! The server name of a TLS ClientHello, read from the first bytes of a
//! connection without decrypting anything.

use std::borrow::Cow;

/// Most bytes of ClientHello this reader looks into (header included).
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;

/// Largest TLS record payload (RFC 8446 §5.1).
pub const MAX_RECORD: usize = 16 * 1024;

/// What the bytes so far say about a server name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sni<'a> {
    /// Not (the start of) a TLS ClientHello.
    NotTls,
    /// A ClientHello so far; more bytes are needed.
    NeedMore,
    /// A complete ClientHello, with this `host_name`, if it sent one
    /// (borrowed from the input unless the hello spans several records).
    Name(Option<Cow<'a, [u8]>>),
}

/// Reads the `server_name` extension (RFC 6066) of the ClientHello at the
/// start of `buf`, also when it is split over several handshake records
/// (some clients fragment theirs on purpose).
pub fn server_name(buf: &[u8]) -> Sni<'_> {
    let mut r = Reader(buf);
    // The handshake bytes: the first record's, or several joined.
    let mut first: &[u8] = &[];
    let mut joined: Vec<u8> = Vec::new();
    loop {
        // Record: content type 22 (handshake), version 3.x, length.
        match r.u8() {
            None => return Sni::NeedMore,
            Some(22) => {}
            Some(_) => return Sni::NotTls,
        }
        match r.u8() {
            None => return Sni::NeedMore,
            Some(3) => {}
            Some(_) => return Sni::NotTls,
        }
        let (Some(_minor), Some(record_len)) = (r.u8(), r.u16()) else {
            return Sni::NeedMore;
        };
        let record_len = usize::from(record_len);
        if !(1..=MAX_RECORD).contains(&record_len) {
            return Sni::NotTls;
        }
        let Some(payload) = r.take(record_len) else {
            return Sni::NeedMore;
        };
        if first.is_empty() {
            first = payload;
        } else {
            if joined.is_empty() {
                joined.extend_from_slice(first);
            }
            joined.extend_from_slice(payload);
        }
        let handshake: &[u8] = if joined.is_empty() { first } else { &joined };
        // Handshake: type 1 (ClientHello), 24-bit length.
        match handshake.first() {
            None => continue,
            Some(1) => {}
            Some(_) => return Sni::NotTls,
        }
        let Some(&[_, hi, mid, lo]) = handshake.get(..4) else {
            continue;
        };
        let len = usize::from(hi) << 16 | usize::from(mid) << 8 | usize::from(lo);
        if len + 4 > MAX_CLIENT_HELLO {
            return Sni::NotTls;
        }
        if handshake.len() < 4 + len {
            continue;
        }
        let found = if joined.is_empty() {
            first
                .get(4..4 + len)
                .and_then(hello_server_name)
                .map(|n| n.map(Cow::Borrowed))
        } else {
            joined
                .get(4..4 + len)
                .and_then(hello_server_name)
                .map(|n| n.map(|n| Cow::Owned(n.to_vec())))
        };
        return match found {
            Some(name) => Sni::Name(name),
            None => Sni::NotTls,
        };
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
        assert_eq!(
            server_name(&wire),
            Sni::Name(Some(Cow::Borrowed(&b"secure.example"[..])))
        );
        assert_eq!(server_name(&client_hello(None)), Sni::Name(None));
    }

    /// The same ClientHello re-framed into records of these payload sizes
    /// (the last takes the rest).
    fn fragmented(record: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut hs = &record[5..];
        let mut out = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let n = if i + 1 == sizes.len() { hs.len() } else { n };
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(n as u16).to_be_bytes());
            out.extend_from_slice(&hs[..n]);
            hs = &hs[n..];
        }
        out
    }

    #[test]
    fn reads_a_hello_split_over_records_at_every_split() {
        let record = client_hello(Some("split.example"));
        for sizes in [&[1, 0][..], &[2, 0], &[4, 0], &[30, 0], &[1, 1, 1, 40, 0]] {
            let wire = fragmented(&record, sizes);
            for cut in 0..wire.len() {
                assert_eq!(server_name(&wire[..cut]), Sni::NeedMore, "{sizes:?} cut {cut}");
            }
            let name = server_name(&wire);
            assert_eq!(
                name,
                Sni::Name(Some(Cow::Owned(b"split.example".to_vec()))),
                "{sizes:?}"
            );
        }
        // An application-data record between the fragments is not a hello.
        let mut wire = fragmented(&record, &[10, 0]);
        wire[10 + 5] = 23;
        assert_eq!(server_name(&wire), Sni::NotTls);
        // A zero-length handshake record is not allowed.
        assert_eq!(server_name(&[22, 3, 1, 0, 0, 1]), Sni::NotTls);
    }

    #[test]
    fn rejects_what_is_not_a_client_hello() {
        assert_eq!(server_name(b"GET / HTTP/1.1\r\n"), Sni::NotTls);
        assert_eq!(server_name(&[22, 2, 0]), Sni::NotTls);
        let mut server_hello = client_hello(Some("a"));
        server_hello[5] = 2;
        assert_eq!(server_name(&server_hello), Sni::NotTls);
        let mut longer = client_hello(Some("a"));
        longer[8] = 0xff; // the hello goes on in a record still to come
        assert_eq!(server_name(&longer), Sni::NeedMore);
        let mut huge = client_hello(Some("a"));
        huge[6] = 0x01; // 64 KiB and more: past MAX_CLIENT_HELLO
        assert_eq!(server_name(&huge), Sni::NotTls);
    }
}
