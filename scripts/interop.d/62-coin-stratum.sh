# A Stratum v1 client written independently in Python from the protocol's description
# (stratum_client.py, standard library only) mines on our pool over our regtest node: it
# subscribes and authorizes, builds the coinbase, merkle root and header itself, grinds nonces
# for the share difficulty, gets shares accepted, a duplicate, a stale and a low-difficulty
# share rejected with Stratum's error codes, and a share meeting the network target accepted
# by the node as a block whose coinbase pays it.
# needs: python3
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $1"; for f in "$work"/*.log; do echo "--- $f"; cat "$f"; done; exit 1; }

"$SERVENT" coin node --network regtest --listen 127.0.0.1:0 --data "$work/node" \
  --rpc 127.0.0.1:0 > "$work/node.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^rpc ' "$work/node.log" && break; sleep 0.1; done
rpc=$(sed -n 's/^rpc //p' "$work/node.log")
[ -n "$rpc" ] || fail "node did not start"

# A share difficulty just below regtest's network difficulty (~4.66e-10): a share target only
# a little above the network target, so low-difficulty shares exist to be rejected.
"$SERVENT" coin pool --node "$rpc" --listen 127.0.0.1:0 --http 127.0.0.1:0 \
  --share-difficulty 4e-10 > "$work/pool.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^http ' "$work/pool.log" && break; sleep 0.1; done
stratum=$(sed -n 's/^stratum //p' "$work/pool.log")
page=$(sed -n 's/^http //p' "$work/pool.log")
[ -n "$stratum" ] || fail "pool did not start"

timeout 120 python3 "$here/stratum_client.py" "$stratum" "$rpc" > "$work/py.log" 2>&1 \
  || fail "the Python Stratum client"
cat "$work/py.log"
python3 - "$page" <<'PY' || fail "pool statistics"
import json, sys, urllib.request
s = json.load(urllib.request.urlopen('http://%s/stats.json' % sys.argv[1], timeout=10))
assert s['accepted'] == 4, s
assert s['rejected'] == {'duplicate': 1, 'low-difficulty': 1, 'stale': 1}, s['rejected']
assert any(b['accepted_by_node'] for b in s['blocks_found']), s['blocks_found']
print('pool page: accepted %d, rejected %s' % (s['accepted'], s['rejected']))
PY
echo "ok: an independent Python Stratum client mined accepted shares and a block on our pool"
