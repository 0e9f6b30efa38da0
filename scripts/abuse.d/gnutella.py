"""Gnutella 0.4 servent under attack (issue 13): garbage, a 1 MiB handshake line, a descriptor
whose length field is 0xFFFFFFFF, 2 000 idle connections, a slowloris handshake, and, from
peers that finished the handshake, a flood of Pings and a flood of Queries. The attacked
servent A holds the file; servent B is linked to it. The legitimate operation is a real
client's search through B's control API (its Query crosses A) that must find A's file, and a
download of that file from A's port. Attacks come from 127.0.0.2-4 (a flooder's
address is banned for a minute, so each flood has its own), the legitimate user from
127.0.0.1. Whole file: about 120 s."""

import os
import random
import socket
import struct
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import abuselib as A  # noqa: E402

ATTACKER_IP = "127.0.0.2"
CONNECT_04 = b"GNUTELLA CONNECT/0.4\n\n"
OK_04 = b"GNUTELLA OK\n\n"
PING, QUERY = 0x00, 0x80


def _connect_from_attacker(addr, timeout=2.0):
    """abuselib's connect, from ATTACKER_IP: the per-IP limits keep an attacker's sockets
    from crowding out the legitimate user, who connects from 127.0.0.1 (on one address the
    two could not be told apart)."""
    s = socket.create_connection(addr, timeout=timeout, source_address=(ATTACKER_IP, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


A._connect = _connect_from_attacker


def descriptor(kind, payload, ttl=7, guid=None):
    """One descriptor: GUID, type, TTL, hops, little-endian payload length, payload."""
    guid = guid if guid is not None else random.getrandbits(128).to_bytes(16, "little")
    return guid + bytes([kind, ttl, 0]) + struct.pack("<I", len(payload)) + payload


def query(words):
    return descriptor(QUERY, b"\0\0" + words.encode() + b"\0")


class Flood(A.Attack):
    """`conns` connections from `source` that each finish the 0.4 handshake and then send descriptors made
    by `make(i)` as fast as the server reads them, draining what it answers (pongs, hits) in a
    reader thread so its send queue is the attacker's own business."""

    def __init__(self, addr, make, source, conns=2, seconds=8.0):
        super().__init__(seconds)
        self.addr, self.make, self.conns, self.source = addr, make, conns, source

    def body(self):
        threads = [threading.Thread(target=self._one, args=(c,), daemon=True)
                   for c in range(self.conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _drain(self, s):
        try:
            while True:
                got = s.recv(65536)
                if not got:
                    return
                self.count("bytes_received", len(got))
        except OSError:
            return

    def _one(self, c):
        i = c << 32
        while self.running():
            try:
                s = socket.create_connection(self.addr, timeout=5.0,
                                             source_address=(self.source, 0))
                s.sendall(CONNECT_04)
                head = b""
                while not head.endswith(b"\n\n") and len(head) < 4096:
                    got = s.recv(1)
                    if not got:
                        break
                    head += got
                if head != OK_04:
                    self.count("handshake_refused")
                    s.close()
                    A.time.sleep(0.2)
                    continue
            except OSError:
                self.count("connect_failed")
                A.time.sleep(0.2)
                continue
            self.count("connections")
            threading.Thread(target=self._drain, args=(s,), daemon=True).start()
            try:
                while self.running():
                    batch = b"".join(self.make(i + k) for k in range(64))
                    i += 64
                    s.sendall(batch)
                    self.count("descriptors_sent", 64)
            except OSError:
                self.count("closed_by_server")
            finally:
                s.close()


def main():
    os.makedirs(A.WORK, exist_ok=True)
    music = os.path.join(A.WORK, "music")
    empty = os.path.join(A.WORK, "empty")
    dl = os.path.join(A.WORK, "dl")
    for d in (music, empty, dl):
        os.makedirs(d, exist_ok=True)
    body = os.urandom(200_000)
    with open(os.path.join(music, "Pixies - Debaser.mp3"), "wb") as f:
        f.write(body)
    pa, pb = A.free_port(), A.free_port()
    a, b = f"127.0.0.1:{pa}", f"127.0.0.1:{pb}"
    cb = f"127.0.0.1:{A.free_port()}"
    with A.Server(["gnutella", "run", "--listen", a, "--share", music,
                   "--control", f"127.0.0.1:{A.free_port()}"],
                  ready=lambda l: "listening on" in l, name="gnutella-a") as srv, \
         A.Server(["gnutella", "run", "--listen", b, "--share", empty, "--peer", a,
                   "--control", cb],
                  ready=lambda l: "listening on" in l, name="gnutella-b"):
        peers = ""
        for _ in range(50):
            peers = A.run(["gnutella", "peers", "--node", cb]).stdout
            if str(pa) in peers:
                break
            A.time.sleep(0.1)
        else:
            A.log(f"FAIL: B never linked to A: {peers!r}")
            sys.exit(1)

        def legit():
            p = A.run(["gnutella", "search", "debaser", "--node", cb, "--wait", "500ms"],
                      timeout=10)
            hit = next((l for l in p.stdout.splitlines() if "Debaser" in l), None)
            if hit is None:
                raise RuntimeError(f"no hit: {p.stdout!r}")
            out = os.path.join(dl, str(A.time.monotonic_ns()))
            os.makedirs(out)
            A.run(["gnutella", "get", hit.split("\t")[0], "--node", cb, "-o", out],
                  timeout=10)
            with open(os.path.join(out, "Pixies - Debaser.mp3"), "rb") as f:
                if f.read() != body:
                    raise RuntimeError("downloaded bytes differ")
            subprocess.run(["rm", "-rf", out], check=False)

        target = ("127.0.0.1", pa)
        A.measure("gnutella", "garbage on 8 connections", "handshake parser closes", srv,
                  legit, lambda: A.Garbage(target, conns=8), expect=A.closed_most())
        A.measure("gnutella", "1 MiB handshake line", "handshake line/size limit", srv, legit,
                  lambda: A.LongLine(target, prefix=b"GNUTELLA CONNECT/0.6\r\nX-Junk: "),
                  expect=A.closed_most())
        A.measure("gnutella", "descriptor length 0xFFFFFFFF", "--max-descriptor 65536", srv,
                  legit,
                  lambda: A.Send(target, CONNECT_04 + bytes(16) + bytes([PING, 7, 0])
                                 + struct.pack("<I", 0xFFFFFFFF)),
                  expect=A.closed_most())
        # Held 22 s: past --handshake-timeout 15s (checked every 5 s) even the 16 the per-IP
        # limit let in are closed, so every one of the 2 000 must be.
        A.measure("gnutella", "2 000 idle connections, held 22 s",
                  "--max-pending-per-ip 16, --handshake-timeout 15s", srv, legit,
                  lambda: A.IdleConns(target, n=2000, seconds=22),
                  expect=A.closed_most(of="opened", share=1.0))
        A.measure("gnutella", "slowloris handshake (200 connections)",
                  "--max-pending-per-ip 16, --handshake-timeout 15s", srv, legit,
                  lambda: A.Slowloris(target, b"GNUTELLA CONNECT/0.6\r\nUser-Agent: slow\r\n",
                                      n=200, interval=0.5),
                  expect=A.closed_most(of="opened"))
        A.measure("gnutella", "Ping flood (2 linked peers)",
                  "8 pings/s per link; past 10x closed, address refused 60 s", srv, legit,
                  lambda: Flood(target, lambda i: descriptor(PING, b""), "127.0.0.3"))
        A.measure("gnutella", "Query flood (2 linked peers)",
                  "200 queries/s per link; past 10x closed, address refused 60 s", srv, legit,
                  lambda: Flood(target, lambda i: query(f"w{i % 997} x{i}"), "127.0.0.4"))
        stats = A.run(["gnutella", "stats", "--node", cb, "--json"]).stdout.strip()
        A.log(f"B's stats after the attacks: {stats}")
    sys.exit(A.exit_code())


if __name__ == "__main__":
    main()
