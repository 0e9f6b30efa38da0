"""Napster index server under attack (issue 13): garbage, a frame whose length field is the
largest the 16-bit field can say, 2 000 idle connections, a slowloris login, a flood of 200
logins, oversized searches from a logged-in client, and the HashDoS share flood of issue 16
(30 000 words whose FxHash agrees in its low 29 bits, shared by one client in full frames, then
removed when it logs out). The legitimate operation is a real client's login + search for a
file another real client shares. Whole file: about 100 s."""

import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import abuselib as A  # noqa: E402

LOGIN, SEARCH, SHARE, SEARCH_END, ERROR_MESSAGE, STATS, MOTD = 2, 200, 100, 202, 404, 214, 621
M64 = (1 << 64) - 1
FX = 0x517CC1B727220A95  # FxHash's multiplier (servent_core::FxHasher)
ALNUM = b"0123456789abcdefghijklmnopqrstuvwxyz"


def colliding_words(n):
    """n distinct 16-character index words ([0-9a-z], as the server lower-cases and splits
    names) whose FxHash as a `str` key (two 8-byte words, then 0xff) agrees in its low 29 bits,
    the attack of issue 16: an unkeyed hashbrown table puts them all on one probe sequence.
    FxHash's step h' = (rotl(h, 5) ^ w) * K is invertible, so the second state's low 24 bits
    fix the low 3 bytes of the second word and its top 5 bits are found by trying the rest."""
    inv = FX
    for _ in range(6):
        inv = inv * (2 - FX * inv) & M64
    r = ((0x1234567 * inv) & ((1 << 29) - 1)) ^ 0xFF  # rotl(h2, 5)'s low 29 bits
    top5, x24 = r & 31, ((r >> 5) * inv) & 0xFFFFFF
    valid = bytearray(1 << 24)
    tri = []
    for a in ALNUM:
        for b in ALNUM:
            for c in ALNUM:
                v = a | (b << 8) | (c << 16)
                valid[v] = 1
                tri.append(v)
    tails = [int.from_bytes(bytes(ALNUM[(j >> (5 * k)) % 36] for k in range(5)), "little") << 24
             for j in range(4096)]
    out, seen, hi = [], set(), 0
    while len(out) < n:
        high = bytes(ALNUM[(hi // 36 ** k) % 36] for k in range(5))
        hi += 1
        high_k = (int.from_bytes(high, "little") << 24) * FX
        for t in tri:
            h1 = (high_k + t * FX) & M64
            rot = ((h1 << 5) | (h1 >> 59)) & M64
            low = (rot ^ x24) & 0xFFFFFF
            if not valid[low]:
                continue
            for tail in tails:
                if ((rot ^ (low | tail)) * FX & M64) >> 59 == top5:
                    w = (t.to_bytes(3, "little") + high + (low | tail).to_bytes(8, "little"))
                    if w not in seen:
                        seen.add(w)
                        out.append(w.decode())
                    break
            if len(out) >= n:
                break
    return out


def frame(kind, payload):
    return struct.pack("<HH", len(payload), kind) + payload


def login_frame(nick, password="pw"):
    return frame(LOGIN, f'{nick} {password} 0 "abuse 0.1" 0'.encode())


def read_frame(s):
    head = b""
    while len(head) < 4:
        got = s.recv(4 - len(head))
        if not got:
            raise ConnectionError("closed")
        head += got
    n, kind = struct.unpack("<HH", head)
    body = b""
    while len(body) < n:
        got = s.recv(n - len(body))
        if not got:
            raise ConnectionError("closed")
        body += got
    return kind, body


def main():
    os.makedirs(A.WORK, exist_ok=True)
    share = os.path.join(A.WORK, "music")
    os.makedirs(share, exist_ok=True)
    with open(os.path.join(share, "Pixies - Debaser.mp3"), "wb") as f:
        f.write(os.urandom(100_000))
    port = A.free_port()
    addr = f"127.0.0.1:{port}"
    env = dict(os.environ, SERVENT_NAPSTER_PASSWORD="legit-pw")
    server = A.Server(["napster", "server", "--listen", addr,
                       "--db", os.path.join(A.WORK, "napster.db"), "--argon2-kib", "1024"],
                      ready="napster server listening on")
    with server as srv:
        sharer = A.Server(["napster", "share", share, "--node", addr, "--nick", "alice"],
                          ready=lambda l: True, env=env, name="sharer")
        with sharer:
            def legit():
                p = A.run(["napster", "search", "debaser", "--node", addr, "--nick", "bob"],
                          timeout=10, env=env)
                if "Debaser" not in p.stdout:
                    raise RuntimeError(f"no hit: {p.stdout!r}")

            target = ("127.0.0.1", port)
            A.measure("napster", "garbage on 8 connections", "frame decoder closes", srv, legit,
                      lambda: A.Garbage(target, conns=8), expect=A.closed_most())
            A.measure("napster", "login frame of 65 535 bytes", "login payload limit", srv,
                      legit,
                      lambda: A.Send(target, struct.pack("<HH", 0xFFFF, LOGIN), tail=0xFFFF),
                      expect=A.closed_most())
            A.measure("napster", "2 000 idle connections", "--max-pending-per-ip 16", srv,
                      legit, lambda: A.IdleConns(target, n=2000),
                      expect=A.closed_most(of="opened"))
            A.measure("napster", "slowloris login (200 connections)",
                      "--max-pending-per-ip 16, --login-timeout 15s", srv, legit,
                      lambda: A.Slowloris(target, login_frame("slow"), n=200, interval=0.5),
                      expect=A.closed_most(of="opened"))

            words = colliding_words(30_000)

            def share_flood(i):
                # One client shares every colliding word (110 per 2 KiB frame), waits until the
                # server has indexed them (its search answer comes after), then logs out, so
                # the server removes them all again while the legitimate search runs.
                with socket.create_connection(target, timeout=20) as s:
                    s.sendall(login_frame(f"hashdos{i}", "hashdos-pw"))
                    kind, _ = read_frame(s)
                    if kind != 3:
                        raise RuntimeError(f"login refused ({kind})")
                    for k in range(0, len(words), 110):
                        name = " ".join(words[k:k + 110]) + ".mp3"
                        s.sendall(frame(SHARE, f'"{name}" {"0" * 32} 1000 128 44100 60'.encode()))
                    s.sendall(frame(SEARCH, f'FILENAME CONTAINS "{words[0]}" MAX_RESULTS 1'.encode()))
                    while read_frame(s)[0] != SEARCH_END:
                        pass

            A.measure("napster", "HashDoS share flood: 30 000 FxHash-colliding words",
                      "keyed word index (per-process random key)", srv, legit,
                      lambda: A.Many(share_flood, workers=1, total=3, seconds=10),
                      expect=lambda st: None if st.get("ok") else
                      f"the attacker's shares did not complete: {st}")

            def one_login(i):
                with socket.create_connection(target, timeout=5) as s:
                    s.sendall(login_frame(f"flood{i}"))
                    kind, _ = read_frame(s)
                    if kind != 3:
                        raise RuntimeError(f"refused ({kind})")

            A.measure("napster", "200 logins at once", "login rate per address and account",
                      srv, legit, lambda: A.Many(one_login, workers=50, total=200))

            def big_searches(i):
                with socket.create_connection(target, timeout=5) as s:
                    s.sendall(login_frame(f"searcher{i % 4}", "searcher-pw"))
                    kind, _ = read_frame(s)
                    if kind != 3:
                        raise RuntimeError(f"login refused ({kind})")
                    words = b" ".join(b"w%05d" % j for j in range(9000))
                    s.sendall(frame(SEARCH, b'FILENAME CONTAINS "' + words[:60000] + b'"'))
                    # Refused with a 404 and ended with 202; the connection stays usable.
                    # (The login's 214 stats and 621 message of the day come first.)
                    kind, body = read_frame(s)
                    while kind in (STATS, MOTD):
                        kind, body = read_frame(s)
                    if kind != ERROR_MESSAGE or b"too long" not in body:
                        raise RuntimeError(f"no 404 for a 60 KB search: {kind} {body[:60]!r}")
                    if read_frame(s)[0] != SEARCH_END:
                        raise RuntimeError("the refused search was not ended with 202")
                    s.sendall(frame(SEARCH, b'FILENAME CONTAINS "debaser" MAX_RESULTS 1'))
                    while read_frame(s)[0] != SEARCH_END:
                        pass

            A.measure("napster", "60 KB search strings",
                      "--max-payload 2048: skipped unread, 404 + 202, connection kept", srv,
                      legit, lambda: A.Many(big_searches, workers=8),
                      expect=lambda st: None if st.get("ok") else
                      f"no refused search completed: {st}")
    sys.exit(A.exit_code())


if __name__ == "__main__":
    main()
