//! Request bodies of any length reach the master and every shadow whole,
//! streamed in bounded memory, and a shadow that cannot keep up is cut
//! (`too_slow`) without slowing the client.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kage::http::{BodyDecoder, HeadStatus, RequestHead};
use kage::proxy::Outcome;
use sha2::{Digest, Sha256};
use support::process::Kage;
use support::*;

/// What a hashing backend received: the body's length and SHA-256.
type Got = Arc<Mutex<Vec<(u64, String)>>>;

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A backend that reads each request body as it streams (`pace`: at most
/// 64 KiB per tick), hashes it, records it and answers its length and
/// digest.
fn hashing_backend(pace: Option<Duration>) -> (TestBackend, Got) {
    let got: Got = Arc::default();
    let g = got.clone();
    let backend = TestBackend::start(move |conn, _| {
        let mut buf = vec![0u8; 64 * 1024];
        let mut held = Vec::new();
        let mut head = RequestHead::new();
        let len = loop {
            match head.parse(&held) {
                Ok(HeadStatus::Complete(len)) => break len,
                Ok(HeadStatus::Partial) => {}
                Err(_) => return,
            }
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => held.extend_from_slice(&buf[..n]),
            }
        };
        let mut dec = BodyDecoder::new(head.framing());
        let (mut hash, mut total) = (Sha256::new(), 0u64);
        let mut pending = held.split_off(len);
        loop {
            let s = dec
                .scan(&pending, |r| {
                    hash.update(&pending[r.clone()]);
                    total += r.len() as u64;
                })
                .expect("a valid body");
            pending.drain(..s.consumed);
            if s.done {
                break;
            }
            if let Some(p) = pace {
                thread::sleep(p);
            }
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
        let digest = hex(&hash.finalize());
        g.lock().unwrap().push((total, digest.clone()));
        let answer = format!("{total} {digest}");
        let _ = conn.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            )
            .as_bytes(),
        );
    });
    (backend, got)
}

/// `blocks` MiB of bytes that differ block by block: sent by `send`,
/// framed as chunked or not; their length and SHA-256.
fn upload(conn: &mut TcpStream, blocks: usize, chunked: bool, pace: Option<Duration>) -> (u64, String) {
    let mut block = vec![0u8; 1 << 20];
    for (i, b) in block.iter_mut().enumerate() {
        *b = (i.wrapping_mul(31) % 251) as u8;
    }
    let mut hash = Sha256::new();
    for i in 0..blocks {
        if let Some(p) = pace {
            thread::sleep(p);
        }
        block[..8].copy_from_slice(&(i as u64).to_le_bytes());
        hash.update(&block);
        if chunked {
            // 16 chunks of 64 KiB per block.
            for piece in block.chunks(64 * 1024) {
                conn.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).unwrap();
                conn.write_all(piece).unwrap();
                conn.write_all(b"\r\n").unwrap();
            }
        } else {
            conn.write_all(&block).unwrap();
        }
    }
    if chunked {
        conn.write_all(b"0\r\n\r\n").unwrap();
    }
    ((blocks as u64) << 20, hex(&hash.finalize()))
}

fn eventually<T>(what: &str, within: Duration, f: impl Fn() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < within, "never: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// The shadow's window in the upload tests. On loopback the client, kage
/// and both backends share two cores: a shadow hashing as fast as the
/// master still falls behind by many MiB at full loopback speed, more than
/// the default 1 MiB (meant for clients uploading at network speed). The
/// client sends 1 MiB per [`PACE`] (about 100 MB/s), and the window leaves
/// a shadow 160 ms of hiccups.
const WINDOW_MIB: usize = 16;

/// Time per MiB the upload tests' client takes.
const PACE: Duration = Duration::from_millis(10);

/// One upload through the kage binary to a master and a shadow.
fn upload_through_kage(mib: usize, chunked: bool) {
    let (master, master_got) = hashing_backend(None);
    let (shadow, shadow_got) = hashing_backend(None);
    let kage = Kage::start(&[
        "--master",
        &master.addr.to_string(),
        "--shadow",
        &shadow.addr.to_string(),
        "--shadow-methods",
        "all",
        "--shadow-body-window",
        &format!("{WINDOW_MIB}MiB"),
    ]);
    let mut conn = TcpStream::connect(kage.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {}", mib << 20)
    };
    conn.write_all(format!("POST /upload HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n").as_bytes())
        .unwrap();
    let t = Instant::now();
    let sent = upload(&mut conn, mib, chunked, Some(PACE));
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    eprintln!("{mib} MiB (chunked: {chunked}) through kage in {:?}", t.elapsed());
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with(&format!("{} {}", sent.0, sent.1)),
        "the client got the master's digest: {answer}"
    );
    assert_eq!(master_got.lock().unwrap().clone(), vec![sent.clone()]);
    let shadow_saw = eventually("the shadow's whole body", Duration::from_secs(30), || {
        shadow_got.lock().unwrap().first().cloned()
    });
    assert_eq!(shadow_saw, sent, "the shadow got the whole body");
    let peak = kage.status_field("VmHWM:") * 1024;
    eprintln!("kage peak RSS {peak} bytes");
    // Bounded by the window, whatever the body's length.
    assert!(
        peak < ((WINDOW_MIB as u64) + 32) << 20,
        "kage's peak RSS was {peak} bytes for a {mib} MiB body"
    );
}

#[test]
fn a_256_mib_upload_reaches_master_and_shadow_whole_in_bounded_memory() {
    upload_through_kage(256, false);
}

#[test]
fn a_64_mib_chunked_upload_reaches_master_and_shadow_whole() {
    upload_through_kage(64, true);
}

#[test]
fn a_shadow_reading_1_mib_per_second_is_cut_while_the_client_goes_at_full_speed() {
    let (master, _) = hashing_backend(None);
    // 64 KiB per 62 ms: about 1 MiB/s.
    let (shadow, shadow_got) = hashing_backend(Some(Duration::from_millis(62)));
    let proxy = ProxySpec::new(master.addr, &[shadow.addr]).shadow_everything().start();
    let mut conn = TcpStream::connect(proxy.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mib = 32;
    conn.write_all(
        format!(
            "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            mib << 20
        )
        .as_bytes(),
    )
    .unwrap();
    let t = Instant::now();
    let sent = upload(&mut conn, mib, false, None);
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let took = t.elapsed();
    assert!(
        answer.ends_with(&format!("{} {}", sent.0, sent.1)),
        "the master got it all: {answer}"
    );
    // At the shadow's pace the upload would take 32 s.
    assert!(took < Duration::from_secs(8), "the client took {took:?}");
    assert_eq!(proxy.exchange().outcome("shadow1"), Outcome::TooSlow);
    assert!(
        shadow_got.lock().unwrap().is_empty(),
        "the shadow never got a whole body"
    );
}
