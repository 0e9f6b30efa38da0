# python-bitcoinlib (an independent implementation of Bitcoin's wire format and scripts) as a
# P2P client of our regtest node: version/verack, getheaders/headers (every header checked
# against our RPC), getdata/block (the block parsed and its coinbase checked), every message
# we send parsed by the library; then a transaction the library signs (P2PKH, SIGHASH_ALL,
# checked by its own VerifyScript) is accepted by our mempool through sendrawtransaction,
# announced to the library's peer connection, and mined into the next block.
# needs: python3 python3-pip
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
work=$(mktemp -d)
trap 'netns_cleanup; rm -rf "$work"' EXIT
need_bitcoinlib

P2P=18644
RPC=18645
coin_regtest_node "$P2P" "$RPC" "$work/node" "$work/node.log"

fail() { echo "FAIL: $1"; echo "--- node"; cat "$work/node.log"; exit 1; }

# The library's key and regtest address; 101 blocks to it make the first coinbase spendable.
addr=$(python3 - <<'PY'
import hashlib, bitcoin
bitcoin.SelectParams('regtest')
from bitcoin.wallet import CBitcoinSecret, P2PKHBitcoinAddress
k = CBitcoinSecret.from_secret_bytes(hashlib.sha256(b'servent interop').digest())
print(P2PKHBitcoinAddress.from_pubkey(k.pub))
PY
)
timeout 120 "$SERVENT" coin mine --blocks 101 --address "$addr" --node "127.0.0.1:$RPC" > "$work/mine.log" 2>&1 \
  || fail "mining 101 blocks: $(tail -3 "$work/mine.log")"

timeout 120 python3 - "$P2P" "$RPC" "$SERVENT" > "$work/py.log" 2>&1 <<'PY' || { cat "$work/py.log"; fail "python-bitcoinlib checks"; }
import hashlib, http.client, io, json, socket, struct, subprocess, sys, time
import bitcoin
bitcoin.SelectParams('regtest')
from bitcoin.core import (CBlock, CBlockHeader, CMutableTransaction, CMutableTxIn, CMutableTxOut,
                          COutPoint, b2lx, lx, b2x)
from bitcoin.core.script import CScript, SignatureHash, SIGHASH_ALL
from bitcoin.core.scripteval import VerifyScript, SCRIPT_VERIFY_P2SH
from bitcoin.core.serialize import BytesSerializer, VarIntSerializer
from bitcoin.messages import (MsgSerializable, msg_version, msg_verack, msg_getheaders, msg_headers,
                              msg_getdata, msg_pong, messagemap)
from bitcoin.net import CInv
from bitcoin.wallet import CBitcoinSecret, P2PKHBitcoinAddress

p2p, rpc_port, servent = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

def rpc(method, *params):
    c = http.client.HTTPConnection('127.0.0.1', rpc_port, timeout=60)
    c.request('POST', '/', json.dumps({'jsonrpc': '1.0', 'id': 1, 'method': method, 'params': list(params)}),
              {'Content-Type': 'application/json'})
    r = json.loads(c.getresponse().read())
    if r['error']:
        raise SystemExit('rpc %s: %s' % (method, r['error']))
    return r['result']

# The library's msg_headers reads bare 80-byte headers; on the wire each header is followed by
# its transaction count (always 0). Decode that form, strictly.
@classmethod
def headers_deser(cls, f, protover=None):
    c = cls()
    n = VarIntSerializer.stream_deserialize(f)
    for _ in range(n):
        c.headers.append(CBlockHeader.stream_deserialize(f))
        if VarIntSerializer.stream_deserialize(f) != 0:
            raise ValueError('header with transactions')
    if f.read(1):
        raise ValueError('trailing bytes in headers')
    return c
msg_headers.msg_deser = headers_deser

# BIP130 `sendheaders` (empty payload) is newer than the library; the node sends it only to
# peers of protocol 70012 and up. Know it, strictly, in case.
class msg_sendheaders(MsgSerializable):
    command = b'sendheaders'
    @classmethod
    def msg_deser(cls, f, protover=None):
        if f.read(1):
            raise ValueError('sendheaders with a payload')
        return cls()
    def msg_ser(self, f):
        pass
messagemap[b'sendheaders'] = msg_sendheaders

s = socket.create_connection(('127.0.0.1', p2p), timeout=30)
f = s.makefile('rb')
received = []
def send(m):
    s.sendall(m.to_bytes())
def recv(want, limit=30):
    """Read (and parse) messages until one whose command is `want`."""
    deadline = time.time() + limit
    while time.time() < deadline:
        m = MsgSerializable.stream_deserialize(f)
        if m is None:
            raise SystemExit('we sent a message the library does not know')
        received.append(m.command)
        if m.command == b'ping':
            send(msg_pong(nonce=m.nonce))
        if m.command == want:
            return m
    raise SystemExit('no %r in time' % want)

v = msg_version()
v.nVersion = 70015
v.nStartingHeight = 0
v.addrTo.ip, v.addrTo.port = '127.0.0.1', p2p
send(v)
theirs = recv(b'version')
assert theirs.nVersion >= 70001, theirs.nVersion
assert theirs.nStartingHeight == 101, theirs.nStartingHeight
assert theirs.strSubVer.startswith(b'/servent'), theirs.strSubVer
recv(b'verack')
send(msg_verack())
print('handshake ok: version %d, %s, height %d' % (theirs.nVersion, theirs.strSubVer.decode(), theirs.nStartingHeight))

gh = msg_getheaders()
gh.locator.vHave = [bitcoin.params.GENESIS_BLOCK.GetHash()]
send(gh)
hs = recv(b'headers').headers
assert len(hs) == 101, len(hs)
prev = bitcoin.params.GENESIS_BLOCK.GetHash()
for i, h in enumerate(hs, 1):
    assert h.hashPrevBlock == prev, i
    assert b2lx(h.GetHash()) == rpc('getblockhash', i), i
    prev = h.GetHash()
print('headers ok: 101 linked headers, each equal to getblockhash')

gd = msg_getdata()
gd.inv = [CInv()]
gd.inv[0].type, gd.inv[0].hash = 2, hs[0].GetHash()
send(gd)
blk = recv(b'block').block
assert blk.GetHash() == hs[0].GetHash()
blk.CheckBlock() if hasattr(blk, 'CheckBlock') else None
key = CBitcoinSecret.from_secret_bytes(hashlib.sha256(b'servent interop').digest())
addr = P2PKHBitcoinAddress.from_pubkey(key.pub)
cb = blk.vtx[0]
assert cb.is_coinbase()
assert cb.vout[0].scriptPubKey == addr.to_scriptPubKey(), 'coinbase pays the address'
assert cb.vout[0].nValue == 50 * 100_000_000
print('block ok: block 1 parsed, merkle root %s, coinbase pays %s' % (b2lx(blk.hashMerkleRoot), addr))

# Spend that coinbase: sign with the library, verify with the library, send over RPC.
txin = CMutableTxIn(COutPoint(cb.GetTxid(), 0))
out_key = CBitcoinSecret.from_secret_bytes(hashlib.sha256(b'servent interop 2').digest())
txout = CMutableTxOut(50 * 100_000_000 - 10_000, P2PKHBitcoinAddress.from_pubkey(out_key.pub).to_scriptPubKey())
tx = CMutableTransaction([txin], [txout])
spk = cb.vout[0].scriptPubKey
sighash = SignatureHash(spk, tx, 0, SIGHASH_ALL)
sig = key.sign(sighash) + bytes([SIGHASH_ALL])
txin.scriptSig = CScript([sig, key.pub])
VerifyScript(txin.scriptSig, spk, tx, 0, (SCRIPT_VERIFY_P2SH,))
txid = rpc('sendrawtransaction', b2x(tx.serialize()))
assert txid == b2lx(tx.GetTxid()), (txid, b2lx(tx.GetTxid()))
assert rpc('getmempoolinfo')['size'] == 1
assert rpc('getrawtransaction', txid) == b2x(tx.serialize())
print('mempool ok: %s accepted' % txid)
# Our node announces it to the library's connection.
inv = recv(b'inv')
assert any(i.type == 1 and b2lx(i.hash) == txid for i in inv.inv), inv

r = subprocess.run([servent, 'coin', 'mine', '--blocks', '1', '--address', str(addr), '--node',
                    '127.0.0.1:%d' % rpc_port], capture_output=True, text=True, timeout=60)
assert r.returncode == 0, r.stderr
best = rpc('getbestblockhash')
b = rpc('getblock', best, 1)
assert b['height'] == 102 and txid in b['tx'], b
assert rpc('getmempoolinfo')['size'] == 0
raw = rpc('getblock', best, 0)
mined = CBlock.deserialize(bytes.fromhex(raw))
assert b2lx(mined.GetHash()) == best
assert any(b2lx(t.GetTxid()) == txid for t in mined.vtx)
print('mined ok: block %s (height 102) holds %s' % (best, txid))
print('messages we sent, all parsed by the library: %s' % sorted(set(c.decode() for c in received)))
PY
cat "$work/py.log"
echo "ok: python-bitcoinlib handshake, headers, block, signed transaction accepted and mined"
