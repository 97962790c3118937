#!/usr/bin/env python3
"""Reproduces, against any build of deployhook, the problems of the issue "safe to face the
internet and to run for months", and prints one figure for each:

  slow      12 connections declaring 25 MiB bodies, signed wrongly, sending a byte a second:
            how long a good signed ping then takes (GitHub gives up at 10 s)
  idle      1,100 idle connections against a 1,024 file-descriptor limit: how long a ping
            then takes, or whether it fails
  flood     5 s of signed deliveries, each with its own delivery id, from 16 connections:
            the largest database log seen, and what is left of it after a clean stop
  symlink   a second server on a symlink to the first one's database: does it start?

Usage: python3 scripts/repro_internet.py [path/to/deployhook]   (default: target/release)
Only the standard library; everything runs on 127.0.0.1.
"""
import hashlib, hmac, json, os, resource, socket, subprocess, sys, tempfile, threading, time

SECRET = b"repro-secret"
BINARY = sys.argv[1] if len(sys.argv) > 1 else "target/release/deployhook"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(database, port, extra=None, nofile=None):
    env = {
        "PATH": os.environ["PATH"], "GITHUB_WEBHOOK_SECRET": SECRET.decode(),
        "GITHUB_TOKEN": "repro", "GITHUB_API_URL": "http://127.0.0.1:9",
        "DEPLOY_COMMAND": "true", "DEPLOYHOOK_DATABASE": database,
        "DEPLOYHOOK_LISTEN": f"127.0.0.1:{port}", "RUST_LOG": "error",
    }
    env.update(extra or {})
    limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None
    proc = subprocess.Popen([BINARY, "serve"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=limit)
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                return proc
            time.sleep(0.05)
    return proc


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def request(event, body, delivery):
    sig = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    head = (f"POST /event_handler HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"X-GitHub-Event: {event}\r\nX-GitHub-Delivery: {delivery}\r\n"
            f"X-Hub-Signature-256: {sig}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def timed_ping(port, timeout=40):
    body = json.dumps({"zen": "repro", "hook_id": 1}).encode()
    started = time.time()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(request("ping", body, f"ping-{time.time_ns()}"))
            answer = s.recv(200)
        status = answer.split(b" ")[1].decode() if answer else "closed"
    except OSError as err:
        status = f"failed ({err.__class__.__name__})"
    return time.time() - started, status


def slow(tmp):
    port = free_port()
    proc = start(f"{tmp}/slow.db", port)
    socks = []
    for _ in range(12):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /event_handler HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"X-GitHub-Event: ping\r\nX-Hub-Signature-256: sha256=00\r\n"
                  b"Content-Length: 26214400\r\n\r\n{")
        socks.append(s)
    stop_trickle = threading.Event()

    def trickle():
        while not stop_trickle.wait(1):
            for s in socks:
                try:
                    s.send(b" ")
                except OSError:
                    pass
    threading.Thread(target=trickle, daemon=True).start()
    time.sleep(0.5)
    took, status = timed_ping(port)
    stop_trickle.set()
    stop(proc)
    print(f"slow:    a signed ping beside 12 slow 25 MiB senders: {took:.2f} s, {status}")


def idle(tmp):
    port = free_port()
    proc = start(f"{tmp}/idle.db", port, nofile=1024)
    socks = []
    for _ in range(1100):
        try:
            # From another address than the ping's, as an attacker's would be GitHub's.
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=2,
                                                  source_address=("127.0.0.2", 0)))
        except OSError:
            break
    time.sleep(0.5)
    took, status = timed_ping(port, timeout=15)
    for s in socks:
        s.close()
    stop(proc)
    print(f"idle:    a signed ping beside {len(socks)} idle connections (fd limit 1024): "
          f"{took:.2f} s, {status}")


def flood(tmp):
    port = free_port()
    database = f"{tmp}/flood.db"
    proc = start(database, port)
    body = json.dumps({"action": "opened", "pull_request": {"number": 1, "merged": False,
                       "base": {"ref": "main"}}, "repository": {"full_name": "acme/w"}}).encode()
    until = time.time() + 5
    sent = [0]
    largest = [0]

    def sender(n):
        with socket.create_connection(("127.0.0.1", port)) as s:
            i = 0
            while time.time() < until:
                s.sendall(request("pull_request", body, f"flood-{n}-{i}"))
                buf = b""
                while b"\r\n\r\n" not in buf:
                    buf += s.recv(4096)
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
                while len(rest) < length:
                    rest += s.recv(4096)
                i += 1
                sent[0] += 1

    def watch():
        while time.time() < until + 0.5:
            try:
                largest[0] = max(largest[0], os.path.getsize(database + "-wal"))
            except OSError:
                pass
            time.sleep(0.02)
    threads = [threading.Thread(target=sender, args=(n,)) for n in range(16)]
    threads.append(threading.Thread(target=watch))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop(proc)
    left = os.path.getsize(database + "-wal") if os.path.exists(database + "-wal") else 0
    print(f"flood:   {sent[0]} deliveries in 5 s ({sent[0] / 5:.0f}/s): database log peaked at "
          f"{largest[0] / 2**20:.1f} MiB, {left / 2**20:.1f} MiB left after a clean stop "
          f"(database {os.path.getsize(database) / 2**20:.1f} MiB)")


def symlink(tmp):
    port, other = free_port(), free_port()
    first = start(f"{tmp}/a.db", port)
    os.symlink(f"{tmp}/a.db", f"{tmp}/b.db")
    second = start(f"{tmp}/b.db", other)
    time.sleep(1)
    started = second.poll() is None
    stop(second)
    stop(first)
    print(f"symlink: a second server on a symlink to the database "
          f"{'STARTED' if started else 'was refused'}")


if __name__ == "__main__":
    print(f"deployhook: {BINARY}")
    for scenario in (slow, idle, flood, symlink):
        with tempfile.TemporaryDirectory() as tmp:
            scenario(tmp)
