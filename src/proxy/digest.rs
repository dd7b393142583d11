//! The digest of a whole response body as it streams: the caller feeds the
//! body with chunked framing already removed, the content coding (gzip,
//! deflate) is inflated here as a stream, and every decoded byte is hashed
//! (XXH3) and counted. Nothing is kept but the hash state, a short digest
//! per 64 KiB block (and, for a coded body, the inflater's window), so a
//! verdict can cover every byte of a body however much of it was captured.

use std::io::{self, Write};

use flate2::write::{GzDecoder, ZlibDecoder};
use xxhash_rust::xxh3::Xxh3;

/// Most bytes a coded body is inflated to for its digest; past it the
/// digest is given up (a small body must not cost unbounded CPU).
pub const MAX_INFLATED: u64 = 1 << 30;

/// Decoded bytes per block: a body's digest keeps one short digest per
/// block, so two bodies longer than what was captured can still say where
/// they first differ (to the block).
pub const DIGEST_BLOCK: usize = 64 * 1024;

/// Most block digests kept (covers 1 GiB); past them the whole digest
/// still covers every byte, the first difference is just not located.
pub const MAX_DIGEST_BLOCKS: usize = 16 * 1024;

/// A whole decoded body's length and digest: XXH3-128 over the XXH3-128 of
/// each [`DIGEST_BLOCK`] and the length (one pass over the bytes), and
/// the first 64 bits of each block's digest.
#[derive(Debug, Clone)]
pub struct BodyDigest {
    /// Decoded bytes.
    pub len: u64,
    /// The digest of the whole body.
    pub xxh3: u128,
    /// Per block, up to [`MAX_DIGEST_BLOCKS`].
    pub blocks: Vec<u64>,
}

impl PartialEq for BodyDigest {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.xxh3 == other.xxh3
    }
}

impl BodyDigest {
    /// The whole digest as 32 hex digits.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.xxh3)
    }

    /// Where two different bodies first differ, to the block: the offset
    /// of the first block whose digests differ (or where the shorter one
    /// ends), when the kept blocks show it.
    pub fn first_difference(&self, other: &BodyDigest) -> Option<u64> {
        let at = self.blocks.iter().zip(&other.blocks).position(|(a, b)| a != b);
        match at {
            Some(i) => Some(i as u64 * DIGEST_BLOCK as u64),
            None if self.len != other.len => {
                let kept = self.blocks.len().min(other.blocks.len()) as u64 * DIGEST_BLOCK as u64;
                let shorter = self.len.min(other.len);
                // Equal blocks as far as both were kept: the shorter body's
                // end is the difference if the kept blocks reach it.
                (kept >= shorter).then_some(shorter)
            }
            None => None,
        }
    }

    /// The digest of a whole body held in memory (`coding`: its
    /// Content-Encoding), as the proxy makes it while a body streams.
    pub fn of(body: &[u8], coding: Option<&[u8]>) -> Option<BodyDigest> {
        let mut d = Digester::new(Coding::of(coding));
        d.update(body);
        d.finish()
    }
}

/// Hashes and counts what is written to it, block by block.
struct Sink {
    whole: Xxh3,
    block: Xxh3,
    in_block: usize,
    len: u64,
    blocks: Vec<u64>,
}

impl Sink {
    fn end_block(&mut self) {
        let d = self.block.digest128();
        self.whole.update(&d.to_le_bytes());
        if self.blocks.len() < MAX_DIGEST_BLOCKS {
            self.blocks.push(d as u64);
        }
        self.block.reset();
        self.in_block = 0;
    }

    fn finish(mut self) -> BodyDigest {
        if self.in_block > 0 || self.len == 0 {
            self.end_block();
        }
        self.whole.update(&self.len.to_le_bytes());
        BodyDigest {
            len: self.len,
            xxh3: self.whole.digest128(),
            blocks: self.blocks,
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.len + buf.len() as u64 > MAX_INFLATED {
            return Err(io::Error::other("the inflated body is too large to digest"));
        }
        self.len += buf.len() as u64;
        let mut rest = buf;
        while !rest.is_empty() {
            let n = rest.len().min(DIGEST_BLOCK - self.in_block);
            self.block.update(&rest[..n]);
            self.in_block += n;
            rest = &rest[n..];
            if self.in_block == DIGEST_BLOCK {
                self.end_block();
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The content coding a digest undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Coding {
    /// Identity, or a coding not undone (the comparison does the same).
    #[default]
    None,
    Gzip,
    Deflate,
}

impl Coding {
    /// From a Content-Encoding value.
    pub(crate) fn of(value: Option<&[u8]>) -> Coding {
        let value = value.map(|c| String::from_utf8_lossy(c).trim().to_ascii_lowercase());
        match value.as_deref() {
            Some("gzip") | Some("x-gzip") => Coding::Gzip,
            Some("deflate") => Coding::Deflate,
            _ => Coding::None,
        }
    }
}

enum Decoder {
    Identity(Sink),
    Gzip(GzDecoder<Sink>),
    Zlib(ZlibDecoder<Sink>),
}

/// A body's digest under way.
pub(crate) struct Digester {
    decoder: Decoder,
    /// The coding could not be undone: no digest.
    failed: bool,
}

impl Digester {
    /// A digester for a body with `coding`.
    pub(crate) fn new(coding: Coding) -> Self {
        let sink = Sink {
            whole: Xxh3::new(),
            block: Xxh3::new(),
            in_block: 0,
            len: 0,
            blocks: Vec::new(),
        };
        let decoder = match coding {
            Coding::Gzip => Decoder::Gzip(GzDecoder::new(sink)),
            Coding::Deflate => Decoder::Zlib(ZlibDecoder::new(sink)),
            Coding::None => Decoder::Identity(sink),
        };
        Digester { decoder, failed: false }
    }

    /// Feeds body bytes (chunked framing removed).
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        if self.failed {
            return;
        }
        let r = match &mut self.decoder {
            Decoder::Identity(s) => s.write_all(bytes),
            Decoder::Gzip(d) => d.write_all(bytes),
            Decoder::Zlib(d) => d.write_all(bytes),
        };
        self.failed = r.is_err();
    }

    /// The digest of the whole body; `None` when its coding could not be
    /// undone (or it inflated past [`MAX_INFLATED`]).
    pub(crate) fn finish(self) -> Option<BodyDigest> {
        if self.failed {
            return None;
        }
        let sink = match self.decoder {
            Decoder::Identity(s) => s,
            Decoder::Gzip(d) => d.finish().ok()?,
            Decoder::Zlib(d) => d.finish().ok()?,
        };
        Some(sink.finish())
    }
}

impl std::fmt::Debug for Digester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Digester").field("failed", &self.failed).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn digest(coding: Option<&[u8]>, body: &[u8], piece: usize) -> Option<BodyDigest> {
        let mut d = Digester::new(Coding::of(coding));
        for p in body.chunks(piece.max(1)) {
            d.update(p);
        }
        d.finish()
    }

    #[test]
    fn pieces_and_codings_do_not_change_the_digest() {
        let body: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let plain = digest(None, &body, body.len()).unwrap();
        assert_eq!(plain.len, body.len() as u64);
        for piece in [1, 7, 4096] {
            assert_eq!(digest(None, &body, piece).as_ref(), Some(&plain));
        }
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&body).unwrap();
        let gz = gz.finish().unwrap();
        for piece in [1, 13, 65536] {
            assert_eq!(
                digest(Some(b"gzip"), &gz, piece).as_ref(),
                Some(&plain),
                "gzip in pieces of {piece}"
            );
        }
        let mut other = body.clone();
        other[300_000] ^= 1;
        let changed = digest(None, &other, 4096).unwrap();
        assert_ne!(changed, plain);
        assert_eq!(
            changed.first_difference(&plain),
            Some(4 * DIGEST_BLOCK as u64),
            "byte 300000 is in block 4"
        );
        // It ends inside block 3, which then differs.
        let shorter = digest(None, &body[..250_000], 999).unwrap();
        assert_eq!(shorter.first_difference(&plain), Some(3 * DIGEST_BLOCK as u64));
        let aligned = digest(None, &body[..2 * DIGEST_BLOCK], 999).unwrap();
        assert_eq!(
            aligned.first_difference(&plain),
            Some(2 * DIGEST_BLOCK as u64),
            "where it ends"
        );
        assert_eq!(BodyDigest::of(&body, None).as_ref(), Some(&plain));
    }

    #[test]
    fn a_broken_coding_has_no_digest() {
        assert_eq!(digest(Some(b"gzip"), b"not gzip at all", 4), None);
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&[7u8; 10_000]).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(digest(Some(b"gzip"), &gz[..gz.len() / 2], 64), None, "cut short");
    }
}
