"""Kademlia (mainline DHT, BEP 5) node under attack (issue 13): garbage datagrams, oversized
datagrams, a KRPC query flood from forged loopback sources (raw sockets, sources 127.x.y.z:
the per-IP limiter cannot hold them, its table of tracked addresses is capped), a get_peers
flood of random info-hashes from one socket, and an announce_peer flood of distinct
info-hashes with a valid token against a store capped with --max-hashes. The legitimate
operation is a real `servent dht lookup` of an info-hash announced through the attacked node,
a member of a two-node network; it must find the announced peer. Whole file: about 60 s."""

import json
import os
import random
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import abuselib as A  # noqa: E402

MAX_HASHES = 1000
RATE = 200
ATTACKER = "127.0.0.2"  # one-socket floods come from here, the legit client from 127.0.0.1
IH = "ab" * 20
PEER_PORT = 7777


def benc(v):
    """Bencodes ints, bytes/str, lists and dicts (keys sorted, as BEP 3 requires)."""
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(benc(x) for x in v) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(benc(k) + benc(x) for k, x in items) + b"e"
    raise TypeError(type(v))


def query(q, args, tid=b"aa"):
    return benc({"t": tid, "y": "q", "q": q, "a": args})


def bdecode_token(data):
    """The `token` of a get_peers response (a minimal scan: `5:token<len>:<bytes>`)."""
    i = data.find(b"5:token")
    if i < 0:
        return None
    j = i + len(b"5:token")
    colon = data.index(b":", j)
    n = int(data[j:colon])
    return data[colon + 1:colon + 1 + n]


class BoundFlood(A.UdpFlood):
    """UdpFlood from one ordinary socket bound to ATTACKER (so the legitimate client's address
    keeps its own rate-limit bucket)."""

    def body(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((ATTACKER, 0))
        s.settimeout(0.2)
        i = 0
        try:
            while self.running():
                try:
                    s.sendto(self.payload(i), self.addr)
                    self.count("sent")
                except OSError:
                    self.count("send_error")
                i += 1
                if self.rate and i % 10 == 0:
                    A.time.sleep(10 / self.rate)
        finally:
            s.close()


def fetch_token(addr, my_id):
    """A valid announce token for ATTACKER, from a get_peers answer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ATTACKER, 0))
    s.settimeout(2)
    try:
        for _ in range(5):
            s.sendto(query("get_peers", {"id": my_id, "info_hash": os.urandom(20)}), addr)
            try:
                data, _ = s.recvfrom(65536)
            except socket.timeout:
                continue
            tok = bdecode_token(data)
            if tok:
                return tok
    finally:
        s.close()
    raise RuntimeError("the node gave no token to a get_peers")


def main():
    pa, pb = A.free_port(A.socket.SOCK_DGRAM), A.free_port(A.socket.SOCK_DGRAM)
    a, b = f"127.0.0.1:{pa}", f"127.0.0.1:{pb}"
    os.makedirs(A.WORK, exist_ok=True)
    data_a, data_b = (os.path.join(A.WORK, f"dht-{p}") for p in (pa, pb))
    ready = lambda l: "listening on" in l  # noqa: E731
    with A.Server(["dht", "run", "--listen", a, "--data", data_a, "--rate-limit-loopback",
                   "--rate-per-ip", str(RATE), "--burst-per-ip", str(2 * RATE),
                   "--max-hashes", str(MAX_HASHES)], ready=ready, name="dht-a") as srv, \
         A.Server(["dht", "run", "--listen", b, "--data", data_b, "--bootstrap", a],
                  ready=ready, name="dht-b"):
        A.run(["dht", "announce", IH, "--port", str(PEER_PORT), "--bootstrap", a,
               "--timeout", "5s"], timeout=10)

        def legit():
            got = A.run(["dht", "lookup", IH, "--bootstrap", a, "--timeout", "5s"], timeout=10)
            if f":{PEER_PORT}" not in got.stdout:
                raise RuntimeError(f"lookup answered {got.stdout.strip()!r}")

        addr = ("127.0.0.1", pa)
        rnd = random.Random(1)
        my_id = bytes(rnd.randrange(256) for _ in range(20))
        A.measure("kademlia", "garbage datagrams", "strict decoder, counted as malformed",
                  srv, legit,
                  lambda: BoundFlood(addr, lambda i: rnd.randbytes(rnd.randrange(1, 1400))))
        A.measure("kademlia", "64 KB datagrams", "--max-datagram 4096: dropped unread", srv,
                  legit,
                  lambda: BoundFlood(addr, lambda i: b"d1:ad2:id20:" + bytes(60000)))
        A.measure("kademlia", "find_node flood, forged sources",
                  "verify pings only; limiter tracks <= 4096 addresses", srv, legit,
                  lambda: A.UdpFlood(addr, lambda i: query(
                      "find_node", {"id": rnd.randbytes(20), "target": rnd.randbytes(20)},
                      tid=b"%02x" % (i & 0xff)), forged=True))
        A.measure("kademlia", "get_peers flood, one socket",
                  f"per-IP rate {RATE}/s (--rate-limit-loopback)", srv, legit,
                  lambda: BoundFlood(addr, lambda i: query(
                      "get_peers", {"id": my_id, "info_hash": rnd.randbytes(20)})))
        token = fetch_token(addr, my_id)
        A.measure("kademlia", "announce_peer flood, distinct hashes",
                  f"--max-hashes {MAX_HASHES}", srv, legit,
                  lambda: BoundFlood(addr, lambda i: query("announce_peer", {
                      "id": my_id, "info_hash": rnd.randbytes(20), "port": 6881,
                      "token": token}), rate=RATE))
        stats = A.run(["dht", "stats", "--node", a, "--json"]).stdout.strip()
        A.log(f"stats after the attacks: {stats}")
        hashes = int(json.loads(stats).get("stored_hashes", 0))
        if hashes > MAX_HASHES:
            A.log(f"FAIL: the node stores {hashes} info-hashes, over --max-hashes {MAX_HASHES}")
            sys.exit(1)
    sys.exit(A.exit_code())


if __name__ == "__main__":
    main()
