#!/usr/bin/env python3
"""A Stratum v1 mining client written from the protocol's public description (slush's
"Stratum mining protocol" / the Bitcoin wiki), standard library only. It does not share code
with servent: it builds the coinbase, the merkle root and the 80-byte header itself.

usage: stratum_client.py HOST:PORT NODE_RPC_HOST:PORT

Checks, exiting non-zero on the first failure:
  - mining.subscribe answers [[subscriptions], extranonce1, extranonce2_size];
  - mining.authorize with a regtest P2PKH address is true;
  - mining.set_difficulty and mining.notify arrive;
  - shares ground here for the share difficulty are accepted (result true);
  - the same share again is rejected as a duplicate (error 22);
  - a share of an unknown job is rejected as stale (error 21);
  - a share above the share target is rejected as low difficulty (error 23);
  - a share meeting the network target became a block on the node whose coinbase pays us.
"""
import hashlib
import http.client
import json
import socket
import struct
import sys
import time

B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
DIFF1 = 0xffff << 208


def dsha(b):
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def base58check(payload):
    data = payload + dsha(payload)[:4]
    n = int.from_bytes(data, 'big')
    s = ''
    while n:
        n, r = divmod(n, 58)
        s = B58[r] + s
    return '1' * (len(data) - len(data.lstrip(b'\0'))) + s


H160 = hashlib.new('sha256', b'stratum interop key').digest()[:20]
ADDRESS = base58check(bytes([0x6f]) + H160)  # regtest P2PKH
SCRIPT = bytes([0x76, 0xa9, 0x14]) + H160 + bytes([0x88, 0xac])


class Pool:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.buf = b''
        self.next_id = 1
        self.notes = []  # notifications received while waiting for an answer

    def send(self, method, params):
        rid = self.next_id
        self.next_id += 1
        line = json.dumps({'id': rid, 'method': method, 'params': params}) + '\n'
        self.sock.sendall(line.encode())
        return rid

    def read(self):
        while b'\n' not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemExit('FAIL: the pool closed the connection')
            self.buf += chunk
        line, self.buf = self.buf.split(b'\n', 1)
        return json.loads(line)

    def call(self, method, params):
        rid = self.send(method, params)
        while True:
            m = self.read()
            if m.get('id') == rid and 'method' not in m:
                return m
            self.notes.append(m)

    def wait_note(self, method):
        for i, m in enumerate(self.notes):
            if m.get('method') == method:
                return self.notes.pop(i)
        while True:
            m = self.read()
            if m.get('method') == method:
                return m
            self.notes.append(m)


def target_of(difficulty):
    return min(int(DIFF1 / difficulty), (1 << 256) - 1)


def header_parts(job, extranonce1, extranonce2):
    (job_id, prevhash, coinb1, coinb2, branch, version, nbits, ntime, _clean) = job
    coinbase = bytes.fromhex(coinb1) + extranonce1 + extranonce2 + bytes.fromhex(coinb2)
    root = dsha(coinbase)
    for h in branch:
        root = dsha(root + bytes.fromhex(h))
    # The notify's prevhash is the header's bytes with every 4-byte word reversed.
    p = bytes.fromhex(prevhash)
    prev = b''.join(p[i:i + 4][::-1] for i in range(0, 32, 4))
    head = (struct.pack('<I', int(version, 16)) + prev + root +
            struct.pack('<I', int(ntime, 16)) + struct.pack('<I', int(nbits, 16)))
    return head, coinbase


def grind(job, extranonce1, extranonce2, want, limit=2_000_000):
    """The first nonce whose header hash satisfies want(hash as a number)."""
    head, _ = header_parts(job, extranonce1, extranonce2)
    for nonce in range(limit):
        h = dsha(head + struct.pack('<I', nonce))
        if want(int.from_bytes(h, 'little')):
            return nonce, h
    raise SystemExit('FAIL: no nonce found')


def network_target(nbits_hex):
    bits = int(nbits_hex, 16)
    return (bits & 0x7fffff) << (8 * ((bits >> 24) - 3))


def rpc(addr, method, *params):
    host, port = addr.rsplit(':', 1)
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    c.request('POST', '/', json.dumps({'jsonrpc': '1.0', 'id': 1, 'method': method,
                                       'params': list(params)}),
              {'Content-Type': 'application/json'})
    r = json.loads(c.getresponse().read())
    if r['error']:
        raise SystemExit('FAIL: rpc %s: %s' % (method, r['error']))
    return r['result']


def main():
    host, port = sys.argv[1].rsplit(':', 1)
    node = sys.argv[2]
    pool = Pool(host, int(port))

    r = pool.call('mining.subscribe', ['python-stratum-interop/1'])
    assert r['error'] is None, r
    subs, e1_hex, e2_size = r['result']
    assert any(s[0] == 'mining.notify' for s in subs), subs
    extranonce1 = bytes.fromhex(e1_hex)
    print('subscribed: extranonce1 %s, extranonce2 of %d bytes' % (e1_hex, e2_size))

    r = pool.call('mining.authorize', [ADDRESS + '.py', 'x'])
    assert r['error'] is None and r['result'] is True, r
    difficulty = pool.wait_note('mining.set_difficulty')['params'][0]
    job = pool.wait_note('mining.notify')['params']
    share_target = target_of(difficulty)
    net_target = network_target(job[6])
    print('authorized as %s; share difficulty %g, job %s at nbits %s' %
          (ADDRESS, difficulty, job[0], job[6]))
    assert share_target > net_target, 'the share difficulty is below the network difficulty'

    def submit(job, e2, nonce):
        return pool.call('mining.submit', [ADDRESS + '.py', job[0], e2.hex(), job[7],
                                           '%08x' % nonce])

    # Shares that are not blocks: the job stays current.
    accepted = 0
    for i in range(3):
        e2 = struct.pack('>I', i).rjust(e2_size, b'\0')
        nonce, _ = grind(job, extranonce1, e2, lambda h: net_target < h <= share_target)
        r = submit(job, e2, nonce)
        assert r['result'] is True and r['error'] is None, r
        accepted += 1
        if i == 0:
            d = submit(job, e2, nonce)
            assert d['result'] is not True and d['error'][0] == 22, d
            print('duplicate rejected: %s' % d['error'])
    print('%d shares accepted' % accepted)

    e2 = struct.pack('>I', 100).rjust(e2_size, b'\0')
    nonce, _ = grind(job, extranonce1, e2, lambda h: h > share_target)
    r = submit(job, e2, nonce)
    assert r['error'] is not None and r['error'][0] == 23, r
    print('low difficulty rejected: %s' % r['error'])

    stale = list(job)
    stale[0] = 'nosuchjob'
    r = submit(stale, e2, nonce)
    assert r['error'] is not None and r['error'][0] == 21, r
    print('stale rejected: %s' % r['error'])

    # A block: a share meeting the network target.
    before = rpc(node, 'getblockcount')
    e2 = struct.pack('>I', 200).rjust(e2_size, b'\0')
    nonce, h = grind(job, extranonce1, e2, lambda h: h <= net_target)
    r = submit(job, e2, nonce)
    assert r['result'] is True, r
    block_hash = h[::-1].hex()
    deadline = time.time() + 30
    while time.time() < deadline and rpc(node, 'getblockcount') <= before:
        time.sleep(0.1)
    b = rpc(node, 'getblock', block_hash, 2)
    coinbase = b['tx'][0]
    paid = [o for o in coinbase['vout'] if o['scriptPubKey']['hex'] == SCRIPT.hex()]
    assert paid, 'the block pays us: %s' % coinbase['vout']
    total = sum(round(o['value'] * 1e8) for o in coinbase['vout'])
    print('block %s at height %d accepted by the node; its coinbase pays us %d of %d sat' %
          (block_hash, b['height'], sum(round(o['value'] * 1e8) for o in paid), total))
    print('ok')


if __name__ == '__main__':
    main()
