//! One decoder for every kind of body framing.

use std::ops::Range;

use super::chunked::{ChunkedDecoder, Scanned};
use super::error::{Error, ErrorKind, fail};
use super::head::Framing;

/// Follows a body through its framing: which input bytes belong to it,
/// which of those are data, and where it ends.
///
/// ```
/// use kage::http::{BodyDecoder, Framing};
/// let mut body = BodyDecoder::new(Framing::Length(3));
/// let s = body.scan(b"abcGET", |r| assert_eq!(r, 0..3)).unwrap();
/// assert!(s.done && s.consumed == 3);
/// ```
#[derive(Debug, Clone)]
pub enum BodyDecoder {
    /// Nothing (more) to read.
    Done,
    /// This many bytes left.
    Length(u64),
    /// A chunked body.
    Chunked(ChunkedDecoder),
    /// Everything until the peer closes (a response without length, or a tunnel).
    UntilClose,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty | Framing::Length(0) => BodyDecoder::Done,
            Framing::Length(n) => BodyDecoder::Length(n),
            Framing::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new()),
            Framing::UntilClose | Framing::Tunnel => BodyDecoder::UntilClose,
        }
    }

    /// True when the body ended (a close-delimited body ends only at EOF).
    pub fn is_done(&self) -> bool {
        match self {
            BodyDecoder::Done => true,
            BodyDecoder::Chunked(c) => c.is_done(),
            _ => false,
        }
    }

    /// Reads `input` up to its end or the end of the body, calling `on_data`
    /// with each run of data bytes as a range of `input`.
    pub fn scan(&mut self, input: &[u8], mut on_data: impl FnMut(Range<usize>)) -> Result<Scanned, Error> {
        match self {
            BodyDecoder::Done => Ok(Scanned {
                consumed: 0,
                done: true,
            }),
            BodyDecoder::Length(left) => {
                // Bounded by input.len(), a usize.
                let take = (*left).min(input.len() as u64) as usize;
                if take > 0 {
                    on_data(0..take);
                }
                *left -= take as u64;
                let done = *left == 0;
                if done {
                    *self = BodyDecoder::Done;
                }
                Ok(Scanned { consumed: take, done })
            }
            BodyDecoder::Chunked(c) => c.scan(input, on_data),
            BodyDecoder::UntilClose => {
                if !input.is_empty() {
                    on_data(0..input.len());
                }
                Ok(Scanned {
                    consumed: input.len(),
                    done: false,
                })
            }
        }
    }

    /// The peer closed: fine for a close-delimited body (which is then done),
    /// [`ErrorKind::Truncated`] for any other that has not ended.
    pub fn finish(&mut self) -> Result<(), Error> {
        match self {
            BodyDecoder::UntilClose => {
                *self = BodyDecoder::Done;
                Ok(())
            }
            _ if self.is_done() => Ok(()),
            _ => fail(ErrorKind::Truncated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_across_reads() {
        let mut b = BodyDecoder::new(Framing::Length(5));
        assert_eq!(
            b.scan(b"ab", |r| assert_eq!(r, 0..2)).unwrap(),
            Scanned {
                consumed: 2,
                done: false
            }
        );
        assert_eq!(b.finish().unwrap_err().kind(), ErrorKind::Truncated);
        assert_eq!(
            b.scan(b"cdeXY", |r| assert_eq!(r, 0..3)).unwrap(),
            Scanned {
                consumed: 3,
                done: true
            }
        );
        assert_eq!(
            b.scan(b"XY", |_| panic!("no data after the end")).unwrap(),
            Scanned {
                consumed: 0,
                done: true
            }
        );
    }

    #[test]
    fn until_close_ends_at_eof() {
        let mut b = BodyDecoder::new(Framing::UntilClose);
        assert_eq!(
            b.scan(b"abc", |r| assert_eq!(r, 0..3)).unwrap(),
            Scanned {
                consumed: 3,
                done: false
            }
        );
        b.finish().unwrap();
        assert!(b.is_done());
    }

    #[test]
    fn empty_is_done() {
        assert!(BodyDecoder::new(Framing::Empty).is_done());
        assert!(BodyDecoder::new(Framing::Length(0)).is_done());
    }
}
