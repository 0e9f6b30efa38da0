# Electrum 4 (Debian's `electrum`, an independent SPV wallet) on our Electrum server on regtest:
# a standard (P2PKH) wallet is created offline, 101 blocks are mined to its first address, the
# wallet's daemon syncs from `servent coin electrum` alone (--oneserver; headers checked by
# Electrum, every transaction fetched and its merkle proof verified against them) and reports
# the mature balance; a payment it builds and signs (`payto`) is broadcast through our server,
# accepted by our node's mempool, mined, and seen by the wallet as confirmed at that height.
# needs: electrum
set -euo pipefail
work=$(mktemp -d)
pids=()
EL=(electrum --regtest -D "$work/wallet")
cleanup() {
  "${EL[@]}" stop >/dev/null 2>&1 || true
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

P2P=18654
RPC=18655
ELECTRUM=18656
fail() {
  echo "FAIL: $1"
  for f in node electrum; do echo "--- $f"; tail -20 "$work/$f.log" 2>/dev/null || true; done
  echo "--- electrum client log"; tail -40 "$work"/wallet/regtest/logs/* 2>/dev/null || true
  exit 1
}
# poll SECONDS CMD...: retry CMD every 0.5 s until it succeeds
poll() { local n=$(( $1 * 2 )); shift; for _ in $(seq "$n"); do "$@" && return 0; sleep 0.5; done; return 1; }

"$SERVENT" coin node --network regtest --listen "127.0.0.1:$P2P" --data "$work/node" \
  --rpc "127.0.0.1:$RPC" > "$work/node.log" 2>&1 &
pids+=($!)
poll 10 grep -q '^rpc ' "$work/node.log" || fail "node did not start"

"${EL[@]}" --offline create --seed_type standard > "$work/create.json" 2>&1 || fail "electrum create: $(cat "$work/create.json")"
addr=$("${EL[@]}" --offline getunusedaddress 2>/dev/null | tail -1)
case "$addr" in m*|n*) ;; *) fail "not a regtest P2PKH address from electrum: $addr";; esac
echo "wallet address $addr"
timeout 120 "$SERVENT" coin mine --blocks 101 --address "$addr" --node "127.0.0.1:$RPC" > "$work/mine.log" 2>&1 \
  || fail "mining 101 blocks: $(tail -3 "$work/mine.log")"

"$SERVENT" coin electrum --node "127.0.0.1:$RPC" --listen "127.0.0.1:$ELECTRUM" --data "$work/electrum" \
  > "$work/electrum.log" 2>&1 &
pids+=($!)
poll 30 grep -q '^electrum ' "$work/electrum.log" || fail "electrum server did not start"
grep -q '^indexed height 101 ' "$work/electrum.log" || fail "server did not index 101 blocks"

"${EL[@]}" daemon -d --oneserver --server "127.0.0.1:$ELECTRUM:t" > "$work/daemon.log" 2>&1 || fail "electrum daemon: $(cat "$work/daemon.log")"
poll 30 "${EL[@]}" load_wallet >/dev/null 2>&1 || fail "load_wallet"
synced() {
  "${EL[@]}" getinfo 2>/dev/null | python3 -c '
import json, sys
i = json.load(sys.stdin)
sys.exit(0 if i["connected"] and i["server_height"] == int(sys.argv[1]) and i["blockchain_height"] == int(sys.argv[1]) else 1)' "$1"
}
poll 60 synced 101 || fail "electrum did not reach height 101 on our server"
balance() { "${EL[@]}" getbalance 2>/dev/null | python3 -c 'import json,sys; b=json.load(sys.stdin); sys.exit(0 if b.get("confirmed")==sys.argv[1] else 1)' "$1"; }
# Coinbases mature after 100 blocks: at height 101 those of blocks 1 and 2 are spendable.
poll 60 balance 100 || fail "wallet balance is not 100 confirmed: $("${EL[@]}" getbalance 2>&1)"
echo "synced: height 101, confirmed balance 100 BTC"

to=mzBc4XEFSdzCDcTxAgf6EZXgsZWpztRhef
tx=$("${EL[@]}" payto "$to" 1.5 --fee 0.0001 2>&1) || fail "payto: $tx"
txid=$("${EL[@]}" broadcast "$tx" 2>&1) || fail "broadcast: $txid"
echo "broadcast $txid"
[ ${#txid} = 64 ] || fail "broadcast answer is not a txid: $txid"
poll 10 sh -c "'$SERVENT' coin status --node 127.0.0.1:$RPC | grep -q '^mempool 1$'" || fail "the payment is not in our node's mempool"
timeout 60 "$SERVENT" coin mine --blocks 1 --address "$to" --node "127.0.0.1:$RPC" > "$work/mine.log" 2>&1 \
  || fail "mining the payment: $(tail -3 "$work/mine.log")"
poll 30 synced 102 || fail "electrum did not follow to height 102"
confirmed() {
  "${EL[@]}" onchain_history 2>/dev/null | python3 -c '
import json, sys
h = json.load(sys.stdin)["transactions"]
sys.exit(0 if any(t["txid"] == sys.argv[1] and t["height"] == 102 and t["bc_value"] == "-1.5001" for t in h) else 1)' "$txid"
}
poll 30 confirmed || fail "the wallet does not show $txid confirmed at 102: $("${EL[@]}" onchain_history 2>&1 | tail -20)"
poll 30 balance 148.4999 || fail "balance after the payment: $("${EL[@]}" getbalance 2>&1)"
echo "ok: Electrum $("${EL[@]}" version 2>/dev/null) synced from our server, paid 1.5 BTC (confirmed at height 102), balance 148.4999"
