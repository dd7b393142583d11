#!/usr/bin/env python3
"""The clients of benches/conns.sh: many connections to one proxy, held open.

    conns-client.py MODE HOST PORT COUNT [options]

MODE is one of
  idle     each connection sends `GET PATH HTTP/1.1` (keep-alive) REQUESTS
           times, one after the other, reading each whole response (status
           line, head, Content-Length bytes or a chunked body); a
           connection is answered when every response was a 200
  partial  each connection sends a request head of exactly --head-bytes
           bytes without its final blank line ("GET PATH HTTP/1.1", "Host:
           x", then an X-Pad header padded with "a") and waits; it counts
           as answered (sent) once every byte is with the kernel

At most --concurrency connections are connecting or waiting for a response
at once (like browsers arriving over time); a connection that is done makes
room for the next. A connection that is not done --timeout seconds after its
connect started fails, and so does every connection not done when --deadline
seconds have passed since the start, or when none has been answered for
--stall seconds (a proxy that stopped accepting or answering: the rest are
not tried). Failed connections are closed.

Prints (stdout, one line each):
  ready answered=A failed=F total=N secs=S errors=KIND:COUNT,...
    once every connection is answered or failed;
then holds the answered connections open (watching for the proxy closing
them, or sending bytes nobody asked for) until SIGTERM or SIGINT, and prints
  final open=O closed=C extra=E
    O: answered connections still open at the end, C: those the proxy
    closed while held, E: those on which it sent unasked bytes (kept).
With --exit it prints the ready line, closes everything and exits instead
(the warm-up).

--source ADDR binds every connection to ADDR before connecting (with
IP_BIND_ADDRESS_NO_PORT, so the port is still chosen per destination):
each source address has its own range of ephemeral ports.
"""

import argparse
import errno
import os
import resource
import selectors
import signal
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def partial_head(path, size):
    """A request head of exactly `size` bytes, without its final CRLF CRLF."""
    start = f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Pad: ".encode()
    if size < len(start) + 1:
        sys.exit(f"--head-bytes {size}: at least {len(start) + 1}")
    return start + b"a" * (size - len(start))


class Conn:
    __slots__ = ("sock", "state", "out", "buf", "left", "started", "need", "length", "chunked")

    def __init__(self, sock, started, requests):
        self.sock = sock
        self.state = "connecting"
        self.out = b""
        self.buf = b""
        self.left = requests  # responses still to read (idle)
        self.started = started
        self.need = None  # body bytes still to come (Content-Length)
        self.length = False  # head seen, reading the body
        self.chunked = False


def parse(c):
    """Consumes complete responses from c.buf. Returns None (need more),
    'ok' (one complete 200), or an error kind."""
    if not c.length:
        end = c.buf.find(b"\r\n\r\n")
        if end < 0:
            return "head-too-big" if len(c.buf) > 65536 else None
        head = c.buf[:end].decode("latin-1").split("\r\n")
        c.buf = c.buf[end + 4 :]
        parts = head[0].split(" ", 2)
        status = parts[1] if len(parts) > 1 else "?"
        if status != "200":
            return f"status-{status}"
        c.need, c.chunked = None, False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                c.need = int(value.strip())
            elif name == "transfer-encoding" and "chunked" in value.lower():
                c.chunked = True
        if c.need is None and not c.chunked:
            return "no-length"
        c.length = True
    if c.chunked:
        # Enough for the small answers measured here: the body ends at the
        # last-chunk and an empty trailer.
        end = c.buf.find(b"0\r\n\r\n")
        if end < 0 or (end > 0 and c.buf[end - 2 : end] != b"\r\n"):
            return None
        c.buf = c.buf[end + 5 :]
    else:
        if len(c.buf) < c.need:
            return None
        c.buf = c.buf[c.need :]
    c.length = False
    return "ok"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["idle", "partial"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("--path", default="/small")
    ap.add_argument("--requests", type=int, default=1, help="requests per connection (idle) [1]")
    ap.add_argument("--head-bytes", type=int, default=300, help="partial head size [300]")
    ap.add_argument("--concurrency", type=int, default=200, help="connections in progress at once [200]")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per connection [10]")
    ap.add_argument("--deadline", type=float, default=120.0, help="seconds for all of them [120]")
    ap.add_argument("--stall", type=float, default=5.0, help="give up after this many seconds without an answer [5]")
    ap.add_argument("--source", help="bind to this address before connecting")
    ap.add_argument("--exit", action="store_true", help="close everything after the ready line")
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if a.count + 16 > soft:
        sys.exit(f"{a.count} connections do not fit in this process's fd limit {soft}")

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    if a.mode == "idle":
        request = f"GET {a.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    else:
        request = partial_head(a.path, a.head_bytes)

    sel = selectors.DefaultSelector()
    t0 = time.monotonic()
    to_open = a.count
    busy = {}  # fd -> Conn, connecting or waiting for its answer
    held = {}  # fd -> Conn, answered and held open
    failed = 0
    errors = {}
    last_answer = t0

    def fail(c, kind):
        nonlocal failed
        failed += 1
        errors[kind] = errors.get(kind, 0) + 1
        fd = c.sock.fileno()
        busy.pop(fd, None)
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    def done(c):
        nonlocal last_answer
        last_answer = time.monotonic()
        fd = c.sock.fileno()
        del busy[fd]
        held[fd] = c
        c.state = "held"
        sel.modify(c.sock, selectors.EVENT_READ, c)

    def send(c):
        try:
            n = c.sock.send(c.out)
        except BlockingIOError:
            return
        except OSError as e:
            fail(c, errno.errorcode.get(e.errno, "send-error"))
            return
        c.out = c.out[n:]
        if c.out:
            sel.modify(c.sock, selectors.EVENT_WRITE, c)
            return
        if a.mode == "partial":
            done(c)
        else:
            c.state = "reading"
            sel.modify(c.sock, selectors.EVENT_READ, c)

    def on_event(c, mask):
        if c.state == "connecting":
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                fail(c, errno.errorcode.get(err, f"connect-{err}"))
                return
            c.state = "sending"
            c.out = request
            send(c)
        elif c.state == "sending":
            send(c)
        elif c.state == "reading":
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as e:
                fail(c, errno.errorcode.get(e.errno, "recv-error"))
                return
            if not data:
                fail(c, "eof")
                return
            c.buf += data
            while True:
                r = parse(c)
                if r is None:
                    return
                if r != "ok":
                    fail(c, r)
                    return
                c.left -= 1
                if c.left == 0:
                    if c.buf:
                        fail(c, "extra-bytes")
                    else:
                        done(c)
                    return
                if not c.buf:
                    c.state = "sending"
                    c.out = request
                    send(c)
                    return

    def open_one():
        nonlocal to_open
        to_open -= 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        c = Conn(s, time.monotonic(), a.requests)
        try:
            if a.source:
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((a.source, 0))
            rc = s.connect_ex((a.host, a.port))
        except OSError as e:
            rc = e.errno
        if rc not in (0, errno.EINPROGRESS):
            nonlocal failed
            failed += 1
            kind = errno.errorcode.get(rc, f"connect-{rc}")
            errors[kind] = errors.get(kind, 0) + 1
            s.close()
            return
        busy[s.fileno()] = c
        sel.register(s, selectors.EVENT_WRITE, c)

    # Ramp: until every connection is answered or failed.
    while (to_open or busy) and not stop:
        now = time.monotonic()
        while to_open and len(busy) < a.concurrency:
            open_one()
        if now - t0 > a.deadline or now - last_answer > a.stall:
            why = "deadline" if now - t0 > a.deadline else "stalled"
            for c in list(busy.values()):
                fail(c, why)
            if to_open:
                failed += to_open
                errors["not-tried"] = errors.get("not-tried", 0) + to_open
                to_open = 0
            break
        for key, mask in sel.select(0.1):
            c = key.data
            if c.state == "held":
                if c.sock.fileno() in held:
                    # An answered connection the proxy closes or talks on
                    # during the ramp: closed now, it is a failure after all.
                    del held[c.sock.fileno()]
                    c.state = "reading"
                    busy[c.sock.fileno()] = c
                    fail(c, "closed-after-answer")
                continue
            on_event(c, mask)
        now = time.monotonic()
        for c in [c for c in busy.values() if now - c.started > a.timeout]:
            fail(c, "timeout")

    secs = time.monotonic() - t0
    errs = ",".join(f"{k}:{v}" for k, v in sorted(errors.items())) or "-"
    print(f"ready answered={len(held)} failed={failed} total={a.count} secs={secs:.1f} errors={errs}", flush=True)
    if a.exit:
        for c in held.values():
            c.sock.close()
        return

    # Hold: watch for the proxy closing connections or sending bytes.
    closed = extra = 0
    while not stop:
        for key, _ in sel.select(1.0):
            c = key.data
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                extra += 1
                continue
            closed += 1
            del held[c.sock.fileno()]
            sel.unregister(c.sock)
            c.sock.close()
    print(f"final open={len(held)} closed={closed} extra={extra}", flush=True)
    os._exit(0)  # skip closing thousands of sockets one by one


if __name__ == "__main__":
    main()
