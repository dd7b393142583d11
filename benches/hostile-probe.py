#!/usr/bin/env python3
"""The probe of benches/hostile.sh: a well-behaved client beside the attack.

    hostile-probe.py HOST PORT PATH DURATION [INTERVAL] [TIMEOUT]

Starts one fresh connection every INTERVAL seconds (default 0.25) for
DURATION seconds, on a fixed schedule (a slow probe does not delay the next
one), each sending `GET PATH HTTP/1.1` with `Connection: close`. A probe is ok
when the whole answer (status line 200, head, Content-Length bytes of body)
arrives within TIMEOUT seconds (default 1) of the connect starting.
Prints one line per probe (`probe OFFSET_S RESULT MS`) and last
`summary ok=N total=N p50_ms=X max_ms=X first_fail_s=X` (ms over ok probes).
"""

import socket
import sys
import threading
import time


def probe(host, port, path, timeout):
    """Returns (result, seconds): result is 'ok', an HTTP status or an error."""
    start = time.monotonic()
    deadline = start + timeout

    def left():
        rest = deadline - time.monotonic()
        if rest <= 0:
            raise TimeoutError
        return rest

    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(left())
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            buf = b""
            while b"\r\n\r\n" not in buf:
                s.settimeout(left())
                chunk = s.recv(65536)
                if not chunk:
                    return ("eof-in-head", time.monotonic() - start)
                buf += chunk
            head, _, body = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            status = parts[1] if len(parts) > 1 else "?"
            length = None
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            while length is None or len(body) < length:
                s.settimeout(left())
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
            if length is not None and len(body) < length:
                return ("short-body", time.monotonic() - start)
            return ("ok" if status == "200" else status, time.monotonic() - start)
    except (TimeoutError, socket.timeout):
        return ("timeout", time.monotonic() - start)
    except OSError as e:
        return (type(e).__name__, time.monotonic() - start)


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    duration = float(sys.argv[4])
    interval = float(sys.argv[5]) if len(sys.argv) > 5 else 0.25
    timeout = float(sys.argv[6]) if len(sys.argv) > 6 else 1.0
    count = int(duration / interval)
    results = [None] * count
    lock = threading.Lock()

    def run(i, offset):
        r = probe(host, port, path, timeout)
        with lock:
            results[i] = (offset, r[0], r[1])
            print(f"probe {offset:.2f} {r[0]} {r[1] * 1000:.1f}", flush=True)

    t0 = time.monotonic()
    threads = []
    for i in range(count):
        offset = i * interval
        pause = t0 + offset - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        t = threading.Thread(target=run, args=(i, offset), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(timeout + 1)
    done = [r for r in results if r is not None]
    ok = sorted(r[2] for r in done if r[1] == "ok")
    fails = [r[0] for r in done if r[1] != "ok"]
    p50 = f"{ok[len(ok) // 2] * 1000:.1f}" if ok else "-"
    mx = f"{ok[-1] * 1000:.1f}" if ok else "-"
    first_fail = f"{min(fails):.2f}" if fails else "-"
    print(f"summary ok={len(ok)} total={count} p50_ms={p50} max_ms={mx} first_fail_s={first_fail}", flush=True)


if __name__ == "__main__":
    main()
