"""BitTorrent under attack (issue 13): the peer port of a seeder and the tracker. Against the
seeder: garbage, a 1 MiB handshake line, a valid handshake then a length field 0xFFFFFFFF,
2 000 idle connections, a slowloris handshake; the legitimate operation is a real `torrent
get` of a 256 KiB torrent from it. Against the tracker: garbage, a 1 MiB request line, 2 000
idle connections, a slowloris request, an announce flood from one IP; the legitimate
operation is an HTTP announce from another loopback IP (127.0.0.2). Whole file: about 90 s."""

import json
import os
import shutil
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import abuselib as A  # noqa: E402


def announce(tracker_port, ih, port, src="127.0.0.2"):
    """One compact HTTP announce from `src`; returns the raw reply."""
    q = ("GET /announce?info_hash=" + "".join(f"%{b:02x}" for b in ih)
         + f"&peer_id=-AB0001-{port:012d}&port={port}&uploaded=0&downloaded=0&left=5"
         + "&compact=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    s = socket.socket()
    s.settimeout(5)
    s.bind((src, 0))
    s.connect(("127.0.0.1", tracker_port))
    try:
        s.sendall(q.encode())
        out = b""
        while True:
            got = s.recv(65536)
            if not got:
                break
            out += got
        return out
    finally:
        s.close()


def main():
    work = os.path.join(A.WORK, "bittorrent")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    src = os.path.join(work, "blob.bin")
    with open(src, "wb") as f:
        f.write(os.urandom(256 << 10))
    tport = A.free_port()
    torrent = os.path.join(work, "blob.torrent")
    A.run(["torrent", "create", src, "-t", f"http://127.0.0.1:{tport}/announce",
           "--piece-size", "32K", "--torrent-file", torrent])
    meta = json.loads(A.run(["torrent", "show", torrent, "--json"]).stdout)
    ih = bytes.fromhex(meta["info_hash"])

    # ---- the seeder's peer port
    sport = A.free_port()
    seed_addr = f"127.0.0.1:{sport}"
    with A.Server(["torrent", "seed", torrent, src, "--listen", seed_addr,
                   "--no-dht"], ready=lambda l: "listening on" in l, name="seeder") as srv:
        n = [0]

        def legit():
            n[0] += 1
            out = os.path.join(work, f"get-{n[0]}")
            p = A.run(["torrent", "get", torrent, "-o", out, "--peer", seed_addr,
                       "--no-dht", "--encryption", "plaintext"], timeout=20)
            with open(os.path.join(out, "blob.bin"), "rb") as a, open(src, "rb") as b:
                if a.read() != b.read():
                    raise RuntimeError(f"wrong bytes: {p.stdout[-200:]!r}")
            shutil.rmtree(out, ignore_errors=True)

        target = ("127.0.0.1", sport)
        # The seeder bans an address that breaks the protocol: attack from another loopback
        # address than the legitimate leecher's 127.0.0.1.
        A.SOURCE_IP = "127.0.0.2"
        hs = b"\x13BitTorrent protocol" + bytes(8) + ih + b"-AB0001-abcdefghijkl"
        A.measure("bittorrent", "peer port: garbage on 8 connections",
                  "handshake/MSE decoder closes", srv, legit,
                  lambda: A.Garbage(target, conns=8), expect=A.closed_most())
        A.measure("bittorrent", "peer port: 1 MiB handshake line",
                  "handshake decoder closes", srv, legit,
                  lambda: A.LongLine(target), expect=A.closed_most())
        A.measure("bittorrent", "peer port: handshake then length 0xFFFFFFFF",
                  "per-type message length limit (from the 5-byte head; ban)", srv, legit,
                  lambda: A.Send(target, hs + struct.pack(">I", 0xFFFFFFFF)),
                  expect=A.closed_most())
        A.measure("bittorrent", "peer port: 2 000 idle connections",
                  "--max-peers-per-ip 16 (oldest silent evicted), --handshake-timeout 20s", srv, legit,
                  lambda: A.IdleConns(target, n=2000))
        A.measure("bittorrent", "peer port: slowloris handshake (200 connections)",
                  "--max-peers-per-ip 16, --handshake-timeout 20s", srv, legit,
                  lambda: A.Slowloris(target, hs, n=200, interval=0.5))
        A.SOURCE_IP = None

    # ---- the tracker
    with A.Server(["torrent", "tracker", "--listen", f"127.0.0.1:{tport}", "--interval", "60"],
                  ready="tracker: ", name="tracker") as srv:
        k = [0]

        def legit():
            k[0] += 1
            r = announce(tport, ih, 20000 + k[0] % 10000)
            if b"8:intervali" not in r:
                raise RuntimeError(f"announce failed: {r[-200:]!r}")

        target = ("127.0.0.1", tport)
        A.measure("bittorrent", "tracker: garbage on 8 connections", "HTTP head parser closes",
                  srv, legit, lambda: A.Garbage(target, conns=8), expect=A.closed_most())
        A.measure("bittorrent", "tracker: 1 MiB request line", "16 KiB request head (413)",
                  srv, legit, lambda: A.LongLine(target, prefix=b"GET /"),
                  expect=A.closed_most())
        A.measure("bittorrent", "tracker: 2 000 idle connections",
                  "--max-conns 1024, --http-timeout 15s", srv, legit,
                  lambda: A.IdleConns(target, n=2000))
        A.measure("bittorrent", "tracker: slowloris request (200 connections)",
                  "--http-timeout 15s", srv, legit,
                  lambda: A.Slowloris(target, b"GET /announce?info_hash=", n=200,
                                      interval=0.5))

        refused = {"n": 0}

        def flood(i):
            r = announce(tport, ih, 30000 + i % 30000, src="127.0.0.1")
            if b"announcing too often" in r:
                refused["n"] += 1

        def flood_refused(stats):
            total = stats.get("ok", 0)
            if total == 0:
                return "the flood made no announces"
            if refused["n"] < 0.5 * total:
                return f"only {refused['n']} of {total} flood announces were refused"
            return None

        A.measure("bittorrent", "tracker: announce flood from one IP (50 workers)",
                  "--announce-rate 300 per IP per minute", srv, legit,
                  lambda: A.Many(flood, workers=50), expect=flood_refused)
    sys.exit(A.exit_code())


if __name__ == "__main__":
    main()
