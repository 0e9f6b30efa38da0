"""Chord member under attack (issue 13): garbage datagrams, oversized datagrams, a GetFingers
flood from forged loopback sources (the amplification a forged request could buy), a FindStep
flood from one socket, and a Put flood of distinct keys against a store capped with
--max-items. The legitimate operation is a real client's lookup plus get of a stored key
through the attacked node, a member of a two-node ring. Whole file: about 70 s."""

import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import abuselib as A  # noqa: E402

MAX_ITEMS = 5000


def msg(kind, body=b"", bits=0, txid=None):
    """One Chord datagram (docs/chord.md): "CH", version 2, type, ring bits, txid, body."""
    if txid is None:
        txid = random.getrandbits(64)
    return b"CH\x02" + bytes([kind, bits]) + struct.pack(">Q", txid) + body


def put(key, value):
    return msg(0x07, struct.pack(">H", len(key)) + key + struct.pack(">H", len(value)) + value)


def find_step(i):
    return msg(0x04, random.Random(i).randbytes(20))


def main():
    pa, pb = A.free_port(A.socket.SOCK_DGRAM), A.free_port(A.socket.SOCK_DGRAM)
    a, b = f"127.0.0.1:{pa}", f"127.0.0.1:{pb}"
    with A.Server(["chord", "run", "--listen", a, "--max-items", str(MAX_ITEMS)],
                  ready=lambda l: "listening on" in l, name="chord-a") as srv, \
         A.Server(["chord", "run", "--listen", b, "--bootstrap", a],
                  ready=lambda l: "listening on" in l, name="chord-b"):
        A.run(["chord", "put", "abuse-key", "abuse-value", "--node", a])

        def legit():
            A.run(["chord", "lookup", "some-key", "--node", a, "--timeout", "5s"], timeout=10)
            got = A.run(["chord", "get", "abuse-key", "--node", a, "--timeout", "5s"],
                        timeout=10)
            if got.stdout.strip() != "abuse-value":
                raise RuntimeError(f"get answered {got.stdout.strip()!r}")

        addr = ("127.0.0.1", pa)
        rnd = random.Random(1)
        A.measure("chord", "garbage datagrams", "strict decoder, counted drops", srv, legit,
                  lambda: A.UdpFlood(addr, lambda i: rnd.randbytes(rnd.randrange(1, 1400))))
        A.measure("chord", "64 KB datagrams", "--max-datagram 16384", srv, legit,
                  lambda: A.UdpFlood(addr, lambda i: b"CH\x02\x07\x00" + bytes(60000)))
        A.measure("chord", "GetFingers flood, forged sources",
                  "answers to unproven sources <= 3x the request (Ping challenge)", srv, legit,
                  lambda: A.UdpFlood(addr, lambda i: msg(0x06), forged=True))
        A.measure("chord", "FindStep flood, one socket", "bounded tables; per-IP rate off "
                  "loopback (--rate-per-ip 200)", srv, legit,
                  lambda: A.UdpFlood(addr, find_step))
        A.measure("chord", f"Put flood of distinct keys", f"--max-items {MAX_ITEMS}", srv,
                  legit,
                  lambda: A.UdpFlood(addr, lambda i: put(b"flood-%d" % i, bytes(512))))
        stats = A.run(["chord", "stats", "--node", a, "--json"]).stdout.strip()
        A.log(f"stats after the attacks: {stats}")
        items = int(__import__("json").loads(stats)["items"])
        if items > MAX_ITEMS:
            A.log(f"FAIL: the store holds {items} items, over --max-items {MAX_ITEMS}")
            sys.exit(1)
    sys.exit(A.exit_code())


if __name__ == "__main__":
    main()
