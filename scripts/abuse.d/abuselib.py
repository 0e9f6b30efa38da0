"""The attack library of scripts/abuse: start a real servent, attack it on loopback for a
bounded time, and measure what a legitimate user sees meanwhile.

A system's file (scripts/abuse.d/<system>.py) does, for each attack:

    with abuselib.Server(["napster", "server", "--listen", f"127.0.0.1:{port}", ...],
                         ready="listening on") as srv:
        legit = lambda: abuselib.run(["napster", "search", "song", "--node", addr], timeout=10)
        abuselib.measure("napster", "garbage", "idle timeout 15 s", srv, legit,
                         lambda: abuselib.Garbage(("127.0.0.1", port), conns=8))
    sys.exit(abuselib.exit_code())

`measure` runs the legitimate operation on the idle server (median of three), samples the
server's RSS, starts the attack, repeats the operation while it runs, stops the attack, waits
for the server to settle, samples RSS again and prints one `ABUSE|{json}` row that the runner
turns into the table of docs/security.md. A row fails when the operation fails or exceeds its
bound during the attack, the server dies, or RSS grows past the budget or stays up afterwards.

Every attack is a context object with start()/stop() and a `stats` dict; each runs in its own
thread and stops by itself after `seconds` (default 8) whatever happens. Only the standard
library is used.
"""

import json
import os
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVENT = os.environ.get("SERVENT") or os.path.join(ROOT, "target", "release", "servent")
WORK = os.environ.get("WORK") or "/tmp/servent-abuse"
_failures = []


def exit_code():
    """0 when every row of this file held, else 1 (call at the end of a system's file)."""
    return 1 if _failures else 0


def log(msg):
    print(f"  {msg}", flush=True)


def free_port(kind=socket.SOCK_STREAM):
    """A port on 127.0.0.1 that was free a moment ago (TCP by default; pass SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    """Resident set size of a process in KiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(args, timeout=15, check=True, env=None):
    """Runs `servent ARGS` as a client; returns the CompletedProcess. With check, a non-zero
    exit raises RuntimeError with its stderr's last line."""
    p = subprocess.run([SERVENT] + list(args), capture_output=True, text=True,
                       timeout=timeout, env=env)
    if check and p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise RuntimeError(f"servent {' '.join(args[:2])} exited {p.returncode}: {last}")
    return p


class Server:
    """A servent process started for the attacks, stopped (SIGINT, then SIGKILL) on exit.
    `ready` is a prefix or a predicate on stdout lines; `wait_line` finds later lines."""

    def __init__(self, args, ready="listening on", timeout=30, env=None, name="server"):
        os.makedirs(WORK, exist_ok=True)
        self.args = list(args)
        self.lines = []
        self._cv = threading.Condition()
        self.stderr_path = os.path.join(WORK, f"{name}-{os.getpid()}-{time.time_ns()}.stderr")
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen([SERVENT] + self.args, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, env=env)
        self.pid = self.proc.pid
        threading.Thread(target=self._read, daemon=True).start()
        self.ready_line = self.wait_line(ready, timeout)

    def _read(self):
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_line(self, pred, timeout=30):
        """The first stdout line (from the start) matching `pred` (a prefix string or a
        function); raises RuntimeError after `timeout` seconds or when the process exits."""
        test = (lambda l: l.startswith(pred)) if isinstance(pred, str) else pred
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for l in self.lines:
                    if test(l):
                        return l
                if self.proc.poll() is not None:
                    raise RuntimeError(f"servent {' '.join(self.args[:2])} exited "
                                       f"{self.proc.returncode}: {self.stderr_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"no matching line within {timeout} s from "
                                       f"servent {' '.join(self.args[:2])}")
                self._cv.wait(min(left, 0.2))

    def alive(self):
        return self.proc.poll() is None

    def rss_kib(self):
        return rss_kib(self.pid)

    def stderr_tail(self, n=3):
        try:
            with open(self.stderr_path) as f:
                return " | ".join(f.read().strip().splitlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


class Attack:
    """Base of every attack: a daemon thread running `self.body()` until stop() or until
    `seconds` pass. Subclasses count what they did in `self.stats`."""

    def __init__(self, seconds=8.0):
        self.seconds = seconds
        self.stats = {}
        self._stop = threading.Event()
        self._thread = None

    def running(self):
        return not self._stop.is_set() and time.monotonic() < self._deadline

    def start(self):
        self._deadline = time.monotonic() + self.seconds
        self._thread = threading.Thread(target=self._guard, daemon=True)
        self._thread.start()
        return self

    def _guard(self):
        try:
            self.body()
        except Exception as e:  # an attack's own failure is reported, not raised
            self.stats["attack_error"] = str(e)

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(self.seconds + 10)
        self.cleanup()

    def cleanup(self):
        pass

    def body(self):
        raise NotImplementedError

    def count(self, key, n=1):
        self.stats[key] = self.stats.get(key, 0) + n


# Where the TCP attacks connect from (None: the kernel's choice, 127.0.0.1). A server that bans
# an attacker's address needs the legitimate client on another one: set e.g. "127.0.0.2".
SOURCE_IP = None


def _connect(addr, timeout=2.0):
    src = (SOURCE_IP, 0) if SOURCE_IP else None
    s = socket.create_connection(addr, timeout=timeout, source_address=src)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _closed_by_peer(s, wait=0.0):
    """True when the server has closed (EOF or reset) the connection."""
    s.settimeout(wait if wait > 0 else 0.001)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except (socket.timeout, BlockingIOError):
        return False
    except OSError:
        return True


class Garbage(Attack):
    """`conns` threads, each: connect, send random bytes (optionally after `prefix`), read what
    comes back, repeat until the server closes, then reconnect."""

    def __init__(self, addr, conns=8, chunk=4096, prefix=b"", seconds=8.0):
        super().__init__(seconds)
        self.addr, self.conns, self.chunk, self.prefix = addr, conns, chunk, prefix

    def body(self):
        threads = [threading.Thread(target=self._one, args=(i,), daemon=True)
                   for i in range(self.conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _one(self, i):
        rnd = random.Random(i)
        while self.running():
            try:
                s = _connect(self.addr)
            except OSError:
                self.count("connect_refused")
                time.sleep(0.05)
                continue
            self.count("connections")
            try:
                if self.prefix:
                    s.sendall(self.prefix)
                while self.running():
                    s.sendall(rnd.randbytes(self.chunk))
                    self.count("bytes_sent", self.chunk)
                    if _closed_by_peer(s):
                        self.count("closed_by_server")
                        break
            except OSError:
                self.count("closed_by_server")
            finally:
                s.close()


class LongLine(Attack):
    """Sends `prefix` then `size` bytes with no line end (a 1 MiB header line by default),
    repeatedly on fresh connections; counts how often the server closed before the end."""

    def __init__(self, addr, size=1 << 20, prefix=b"", fill=b"A", seconds=8.0):
        super().__init__(seconds)
        self.addr, self.size, self.prefix, self.fill = addr, size, prefix, fill

    def body(self):
        block = self.fill * 65536
        while self.running():
            try:
                s = _connect(self.addr)
            except OSError:
                self.count("connect_refused")
                time.sleep(0.05)
                continue
            self.count("connections")
            sent = 0
            try:
                s.sendall(self.prefix)
                while sent < self.size and self.running():
                    n = min(len(block), self.size - sent)
                    s.sendall(block[:n])
                    sent += n
                if _closed_by_peer(s, wait=3.0):
                    self.count("closed_by_server")
                else:
                    self.count("kept_open")
            except OSError:
                self.count("closed_by_server")
            finally:
                self.count("bytes_sent", sent)
                s.close()


class Send(Attack):
    """Sends fixed bytes (e.g. a frame whose length field is 0xFFFFFFFF) on fresh connections,
    then sends `tail` bytes of filler, and records whether the server closed."""

    def __init__(self, addr, payload, tail=65536, seconds=8.0):
        super().__init__(seconds)
        self.addr, self.payload, self.tail = addr, payload, tail

    def body(self):
        while self.running():
            try:
                s = _connect(self.addr)
            except OSError:
                self.count("connect_refused")
                time.sleep(0.05)
                continue
            self.count("connections")
            try:
                s.sendall(self.payload)
                if self.tail:
                    s.sendall(b"\0" * self.tail)
                if _closed_by_peer(s, wait=3.0):
                    self.count("closed_by_server")
                else:
                    self.count("kept_open")
            except OSError:
                self.count("closed_by_server")
            finally:
                s.close()


class IdleConns(Attack):
    """Opens `n` connections (sending `hello` on each, nothing by default) and holds them;
    stats: how many opened, and how many the server had closed when the attack ended."""

    def __init__(self, addr, n=2000, hello=b"", seconds=8.0):
        super().__init__(seconds)
        self.addr, self.n, self.hello = addr, n, hello
        self.socks = []

    def body(self):
        lock = threading.Lock()
        todo = [self.n]

        def opener():
            while self.running():
                with lock:
                    if todo[0] == 0:
                        return
                    todo[0] -= 1
                try:
                    s = _connect(self.addr, timeout=2.0)
                    if self.hello:
                        s.sendall(self.hello)
                    with lock:
                        self.socks.append(s)
                        self.count("opened")
                except OSError:
                    with lock:
                        self.count("refused")

        openers = [threading.Thread(target=opener, daemon=True) for _ in range(16)]
        for t in openers:
            t.start()
        for t in openers:
            t.join()
        while self.running():
            time.sleep(0.1)
        self.stats["closed_by_server"] = sum(1 for s in self.socks if _closed_by_peer(s))

    def cleanup(self):
        for s in self.socks:
            s.close()
        self.socks = []


class Slowloris(Attack):
    """Opens `n` connections and sends `payload` one byte every `interval` seconds on each
    (a handshake that never completes); stats: how many the server closed."""

    def __init__(self, addr, payload, n=200, interval=1.0, seconds=8.0):
        super().__init__(seconds)
        self.addr, self.payload, self.n, self.interval = addr, payload, n, interval
        self.socks = []

    def body(self):
        for _ in range(self.n):
            try:
                self.socks.append([_connect(self.addr, timeout=1.0), 0])
                self.count("opened")
            except OSError:
                self.count("refused")
        while self.running():
            for entry in self.socks:
                s, i = entry
                if s is None:
                    continue
                try:
                    s.sendall(self.payload[i % len(self.payload):][:1])
                    entry[1] = i + 1
                except OSError:
                    self.count("closed_by_server")
                    s.close()
                    entry[0] = None
            time.sleep(self.interval)
        self.stats["closed_by_server"] = self.stats.get("closed_by_server", 0) + sum(
            1 for s, _ in self.socks if s is not None and _closed_by_peer(s))

    def cleanup(self):
        for s, _ in self.socks:
            if s is not None:
                s.close()
        self.socks = []


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def udp_packet(src, dst, payload):
    """An IPv4+UDP datagram from `src` (ip, port) to `dst` for a raw IP_HDRINCL socket, so a
    test can forge sender addresses on loopback (root only)."""
    sip, dip = socket.inet_aton(src[0]), socket.inet_aton(dst[0])
    ulen = 8 + len(payload)
    pseudo = sip + dip + struct.pack("!BBH", 0, socket.IPPROTO_UDP, ulen)
    udp = struct.pack("!HHHH", src[1], dst[1], ulen, 0)
    csum = _checksum(pseudo + udp + payload) or 0xFFFF
    udp = struct.pack("!HHHH", src[1], dst[1], ulen, csum)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, random.getrandbits(16), 0, 64,
                     socket.IPPROTO_UDP, 0, sip, dip)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return ip + udp + payload


class UdpFlood(Attack):
    """Sends datagrams `payload(i) -> bytes` to `addr` as fast as it can (or `rate` per second).
    With `forged`, each comes from a random 127.x.y.z source through a raw socket; otherwise
    from one ordinary socket."""

    def __init__(self, addr, payload, forged=False, rate=None, seconds=8.0):
        super().__init__(seconds)
        self.addr, self.payload, self.forged, self.rate = addr, payload, forged, rate

    def body(self):
        if self.forged:
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rnd = random.Random(7)
        i = 0
        t0 = time.monotonic()
        try:
            while self.running():
                data = self.payload(i)
                try:
                    if self.forged:
                        src = (f"127.{rnd.randrange(1, 255)}.{rnd.randrange(256)}."
                               f"{rnd.randrange(1, 255)}", rnd.randrange(1024, 65535))
                        s.sendto(udp_packet(src, self.addr, data), (self.addr[0], 0))
                    else:
                        s.sendto(data, self.addr)
                    self.count("sent")
                except OSError:
                    self.count("send_error")
                i += 1
                if self.rate:
                    ahead = i / self.rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        finally:
            s.close()


class Many(Attack):
    """Runs `fn(i)` from `workers` threads until the attack ends or `total` calls were made
    (e.g. 200 clients logging in at once); counts ok and error results."""

    def __init__(self, fn, workers=50, total=None, seconds=8.0):
        super().__init__(seconds)
        self.fn, self.workers, self.total = fn, workers, total
        self._lock = threading.Lock()
        self._next = 0

    def body(self):
        threads = [threading.Thread(target=self._one, daemon=True) for _ in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _one(self):
        while self.running():
            with self._lock:
                i = self._next
                if self.total is not None and i >= self.total:
                    return
                self._next += 1
            try:
                self.fn(i)
                self.count("ok")
            except Exception:
                self.count("error")


def _timed(fn, timeout):
    t0 = time.monotonic()
    box = {}

    def go():
        try:
            box["r"] = fn()
        except Exception as e:
            box["e"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(timeout)
    dt = time.monotonic() - t0
    if t.is_alive():
        return dt, f"no answer within {timeout} s"
    if "e" in box:
        return dt, str(box["e"])
    return dt, None


def measure(system, attack, limit, server, legit, make_attack, max_during_s=10.0,
            rss_budget_mib=256, settle_s=3.0, expect=None):
    """Runs one attack against `server` and prints its row. `legit()` is the legitimate
    operation (raises on failure); `make_attack()` builds the Attack; `limit` names the limit
    that defends against it (for the table). `expect(stats) -> str|None` may check the attack's
    own counters (e.g. that the server closed the 1 MiB line) and return a failure reason."""
    reasons = []
    idle = []
    for _ in range(3):
        dt, err = _timed(legit, max_during_s)
        if err:
            reasons.append(f"idle operation failed: {err}")
            break
        idle.append(dt)
    idle_s = statistics.median(idle) if idle else float("nan")
    rss_before = server.rss_kib()
    atk = make_attack()
    atk.start()
    time.sleep(min(1.0, atk.seconds / 4))
    peak = [server.rss_kib()]
    during_s, err = _timed(legit, max_during_s)
    if err:
        reasons.append(f"operation during the attack failed: {err}")
    while atk.running():
        peak.append(server.rss_kib())
        time.sleep(0.25)
    atk.stop()
    peak.append(server.rss_kib())
    time.sleep(settle_s)
    rss_after = server.rss_kib()
    after_s, err = _timed(legit, max_during_s)
    if err:
        reasons.append(f"operation after the attack failed: {err}")
    if not server.alive():
        reasons.append(f"server died: {server.stderr_tail()}")
    rss_peak = max(peak)
    if rss_peak - rss_before > rss_budget_mib * 1024:
        reasons.append(f"RSS grew {(rss_peak - rss_before) // 1024} MiB "
                       f"(budget {rss_budget_mib} MiB)")
    if rss_after - rss_before > max(rss_budget_mib * 1024 // 2, 32 * 1024):
        reasons.append(f"RSS stayed {(rss_after - rss_before) // 1024} MiB up after the attack")
    if "attack_error" in atk.stats:
        reasons.append(f"the attack itself failed: {atk.stats['attack_error']}")
    if expect:
        why = expect(atk.stats)
        if why:
            reasons.append(why)
    row(system, attack, limit, idle_s, during_s, after_s, rss_before, rss_peak, rss_after,
        atk.stats, reasons)
    return not reasons


def row(system, attack, limit, idle_s, during_s, after_s, rss_before, rss_peak, rss_after,
        stats, reasons):
    ok = not reasons
    if not ok:
        _failures.append((system, attack, reasons))
    rec = {"system": system, "attack": attack, "limit": limit, "idle_ms": round(idle_s * 1e3, 1),
           "during_ms": round(during_s * 1e3, 1), "after_ms": round(after_s * 1e3, 1),
           "rss_before_mib": round(rss_before / 1024, 1), "rss_peak_mib": round(rss_peak / 1024, 1),
           "rss_after_mib": round(rss_after / 1024, 1), "stats": stats, "ok": ok,
           "reasons": reasons}
    print("ABUSE|" + json.dumps(rec), flush=True)
    verdict = "ok" if ok else "FAIL: " + "; ".join(reasons)
    counters = ", ".join(f"{k} {v}" for k, v in stats.items())
    log(f"{attack}: legit {rec['idle_ms']} ms idle, {rec['during_ms']} ms during; RSS "
        f"{rec['rss_before_mib']} -> {rec['rss_peak_mib']} -> {rec['rss_after_mib']} MiB; "
        f"attack: {counters}; {verdict}")


def closed_most(key="closed_by_server", of="connections", share=0.9):
    """An `expect` check: the server closed at least `share` of the attack's connections."""
    def check(stats):
        n, c = stats.get(of, 0), stats.get(key, 0)
        if n == 0:
            return f"the attack made no {of}"
        if c < share * n:
            return f"the server closed only {c} of {n} {of}"
        return None
    return check
