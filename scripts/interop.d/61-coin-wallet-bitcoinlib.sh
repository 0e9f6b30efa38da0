# Our wallet against python-bitcoinlib (an independent implementation of Bitcoin's transactions
# and scripts): a payment built and signed by `servent coin wallet send` is parsed by the library
# and every input's signature passes the library's VerifyScript against the output it spends;
# then the library builds and signs a transaction spending what it received, paying our second
# wallet, which our node accepts (sendrawtransaction) and mines, and which that wallet sees
# pending, then confirmed.
# needs: python3 python3-pip
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
work=$(mktemp -d)
trap 'netns_cleanup; rm -rf "$work"' EXIT
need_bitcoinlib

P2P=18654
RPC=18655
node="127.0.0.1:$RPC"
coin_regtest_node "$P2P" "$RPC" "$work/node" "$work/node.log"
fail() { echo "FAIL: $1"; echo "--- node"; cat "$work/node.log"; exit 1; }

export SERVENT_WALLET_PASSWORD="interop $$ password"
wallet() { timeout 120 "$SERVENT" coin wallet "$@"; }
wallet create --wallet "$work/a.wallet" --node "$node" >/dev/null || fail "create a"
wallet create --wallet "$work/b.wallet" --node "$node" >/dev/null || fail "create b"
a=$(wallet address --wallet "$work/a.wallet" | head -1)
timeout 120 "$SERVENT" coin mine --blocks 101 --address "$a" --node "$node" > "$work/mine.log" 2>&1 \
  || fail "mining: $(tail -3 "$work/mine.log")"

# The library's key and address; our wallet pays it.
lib_addr=$(python3 - <<'PY'
import hashlib, bitcoin
bitcoin.SelectParams('regtest')
from bitcoin.wallet import CBitcoinSecret, P2PKHBitcoinAddress
k = CBitcoinSecret.from_secret_bytes(hashlib.sha256(b'servent wallet interop').digest())
print(P2PKHBitcoinAddress.from_pubkey(k.pub))
PY
)
txid=$(wallet send "$lib_addr" 12.5 --wallet "$work/a.wallet" --node "$node" --fee-rate 3 2> "$work/send.log" | head -1) \
  || fail "send: $(cat "$work/send.log")"
echo "our wallet paid 12.5 BTC to $lib_addr: $txid ($(cat "$work/send.log"))"
b=$(wallet address --wallet "$work/b.wallet" | head -1)

timeout 120 python3 - "$RPC" "$SERVENT" "$txid" "$b" > "$work/py.log" 2>&1 <<'PY' || { cat "$work/py.log"; fail "python-bitcoinlib checks"; }
import hashlib, http.client, json, subprocess, sys
import bitcoin
bitcoin.SelectParams('regtest')
from bitcoin.core import CBlock, CMutableTransaction, CMutableTxIn, CMutableTxOut, COutPoint, CTransaction, b2lx, lx, b2x
from bitcoin.core.script import CScript, SignatureHash, SIGHASH_ALL
from bitcoin.core.scripteval import VerifyScript, SCRIPT_VERIFY_P2SH
from bitcoin.wallet import CBitcoinSecret, CBitcoinAddress, P2PKHBitcoinAddress

rpc_port, servent, txid, b_addr = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
def rpc(method, *params):
    c = http.client.HTTPConnection('127.0.0.1', rpc_port, timeout=60)
    c.request('POST', '/', json.dumps({'jsonrpc': '1.0', 'id': 1, 'method': method, 'params': list(params)}),
              {'Content-Type': 'application/json'})
    r = json.loads(c.getresponse().read())
    if r['error']:
        raise SystemExit('rpc %s: %s' % (method, r['error']))
    return r['result']

assert txid in rpc('getrawmempool'), 'our payment is in the mempool'
tx = CTransaction.deserialize(bytes.fromhex(rpc('getrawtransaction', txid)))
assert b2lx(tx.GetTxid()) == txid
# The outputs our wallet spends: coinbases of the chain's blocks.
outputs = {}
for h in range(1, rpc('getblockcount') + 1):
    blk = CBlock.deserialize(bytes.fromhex(rpc('getblock', rpc('getblockhash', h), 0)))
    for t in blk.vtx:
        outputs[t.GetTxid()] = t
value_in = 0
for i, txin in enumerate(tx.vin):
    prev = outputs[txin.prevout.hash].vout[txin.prevout.n]
    VerifyScript(txin.scriptSig, prev.scriptPubKey, tx, i, (SCRIPT_VERIFY_P2SH,))
    value_in += prev.nValue
fee = value_in - sum(o.nValue for o in tx.vout)
size = len(tx.serialize())
assert fee >= 3 * size, (fee, size)
print('our signature ok: %d input(s) pass VerifyScript, fee %d sat for %d bytes (%.2f sat/vB)'
      % (len(tx.vin), fee, size, fee / size))

key = CBitcoinSecret.from_secret_bytes(hashlib.sha256(b'servent wallet interop').digest())
mine_spk = P2PKHBitcoinAddress.from_pubkey(key.pub).to_scriptPubKey()
vout = [i for i, o in enumerate(tx.vout) if o.scriptPubKey == mine_spk]
assert len(vout) == 1 and tx.vout[vout[0]].nValue == 1_250_000_000, 'pays 12.5 BTC to the library'

# Mine it, then the library spends it to our wallet B.
r = subprocess.run([servent, 'coin', 'mine', '--blocks', '1', '--address', str(P2PKHBitcoinAddress.from_pubkey(key.pub)),
                    '--node', '127.0.0.1:%d' % rpc_port], capture_output=True, text=True, timeout=60)
assert r.returncode == 0, r.stderr
txin = CMutableTxIn(COutPoint(tx.GetTxid(), vout[0]))
spend = CMutableTransaction([txin], [CMutableTxOut(500_000_000, CBitcoinAddress(b_addr).to_scriptPubKey()),
                                     CMutableTxOut(1_250_000_000 - 500_000_000 - 1_000, mine_spk)])
sig = key.sign(SignatureHash(mine_spk, spend, 0, SIGHASH_ALL)) + bytes([SIGHASH_ALL])
txin.scriptSig = CScript([sig, key.pub])
VerifyScript(txin.scriptSig, mine_spk, spend, 0, (SCRIPT_VERIFY_P2SH,))
sent = rpc('sendrawtransaction', b2x(spend.serialize()))
assert sent == b2lx(spend.GetTxid())
print('library transaction accepted: %s pays 5 BTC to %s' % (sent, b_addr))
print(sent)
PY
cat "$work/py.log"
spend=$(tail -1 "$work/py.log")
bal=$(wallet balance --wallet "$work/b.wallet" --node "$node")
echo "$bal" | grep -qx 'pending 5.00000000' || fail "B does not see the library's payment pending: $bal"
timeout 120 "$SERVENT" coin mine --blocks 1 --address "$a" --node "$node" > "$work/mine.log" 2>&1 || fail "mining"
bal=$(wallet balance --wallet "$work/b.wallet" --node "$node")
echo "$bal" | grep -qx 'confirmed 5.00000000' || fail "B does not see the library's payment confirmed: $bal"
wallet history --wallet "$work/b.wallet" --node "$node" 2>/dev/null | grep -q "^$spend " || fail "not in B's history"
echo "ok: our wallet's signatures verify in python-bitcoinlib; its transaction was accepted, mined and credited to our wallet"
