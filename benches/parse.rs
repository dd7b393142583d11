//! Parser benchmarks. `request_head`: bare httparse against kage's full
//! incremental head parse with framing validation, on one browser GET.
//! `chunked`: a 1 MiB body in 4 KiB chunks, pass-through and decoded.

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use kage::http::{ChunkedDecoder, HeadStatus, RequestHead};

/// A GET as a current desktop browser sends it (about 600 bytes).
const BROWSER_GET: &[u8] = b"GET /articles/shadow-traffic?ref=home HTTP/1.1\r\n\
Host: blog.example.org\r\n\
Connection: keep-alive\r\n\
sec-ch-ua: \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-Mode: navigate\r\n\
Referer: https://blog.example.org/\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-GB,en;q=0.9\r\n\
Cookie: session=8f2c1e; theme=dark\r\n\r\n";

fn request_head(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_head");
    group.throughput(Throughput::Bytes(BROWSER_GET.len() as u64));
    group.bench_function("httparse", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            let status = req.parse(black_box(BROWSER_GET)).expect("valid request");
            assert!(status.is_complete());
            black_box(req.headers.len())
        })
    });
    let mut head = RequestHead::new();
    group.bench_function("kage", |b| {
        b.iter(|| {
            head.clear();
            let status = head.parse(black_box(BROWSER_GET)).expect("valid request");
            assert_eq!(status, HeadStatus::Complete(BROWSER_GET.len()));
            black_box(head.fields().len())
        })
    });
    group.finish();
}

/// `total` bytes of data in chunks of `chunk` bytes, then the last chunk.
fn chunked_body(total: usize, chunk: usize) -> Vec<u8> {
    let mut wire = Vec::with_capacity(total + total / chunk * 10 + 5);
    for i in 0..total / chunk {
        wire.extend_from_slice(format!("{chunk:x}\r\n").as_bytes());
        wire.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, chunk));
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    wire
}

fn chunked(c: &mut Criterion) {
    const TOTAL: usize = 1 << 20;
    let wire = chunked_body(TOTAL, 4096);
    let mut group = c.benchmark_group("chunked");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    // As a proxy sees it: socket reads of 16 KiB, framing found, bytes untouched.
    group.bench_with_input(BenchmarkId::new("pass_through", "1MiB/4KiB"), &wire, |b, wire| {
        b.iter(|| {
            let mut dec = ChunkedDecoder::new();
            let mut data = 0;
            for read in wire.chunks(16 * 1024) {
                let s = dec.scan(read, |r| data += r.len()).expect("valid body");
                if s.done {
                    break;
                }
            }
            assert_eq!(data, TOTAL);
            black_box(data)
        })
    });
    let mut out = Vec::with_capacity(TOTAL);
    group.bench_with_input(BenchmarkId::new("decode", "1MiB/4KiB"), &wire, |b, wire| {
        b.iter(|| {
            out.clear();
            let mut dec = ChunkedDecoder::new();
            for read in wire.chunks(16 * 1024) {
                let (s, _) = dec.decode(read, &mut out, TOTAL).expect("valid body");
                if s.done {
                    break;
                }
            }
            assert_eq!(out.len(), TOTAL);
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, request_head, chunked);
criterion_main!(benches);
