"""Napster index server under attack (issue 13): garbage, a frame whose length field is the
largest the 16-bit field can say, 2 000 idle connections, a slowloris login, a flood of 200
logins, and oversized searches from a logged-in client. The legitimate operation is a real
client's login + search for a file another real client shares. Whole file: about 80 s."""

import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import abuselib as A  # noqa: E402

LOGIN, SEARCH = 2, 200


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
                    read_frame(s)

            A.measure("napster", "60 KB search strings", "query word limit", srv, legit,
                      lambda: A.Many(big_searches, workers=8))
    sys.exit(A.exit_code())


if __name__ == "__main__":
    main()
