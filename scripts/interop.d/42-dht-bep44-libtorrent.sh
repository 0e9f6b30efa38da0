# BEP 44 items between our DHT node and python3-libtorrent's DHT on 127.0.0.1: an immutable
# item put by libtorrent is fetched by `servent dht get`, one put by `servent dht put` is
# fetched by libtorrent (dht_get_immutable_item), byte for byte; and a mutable item we put
# twice (ed25519 key file, salt) is fetched by libtorrent, which checks its signature, at
# seq 2.
# needs: python3-libtorrent
set -euo pipefail
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

OUR_PORT=16895
LT_PORT=16896
(cd "$work" && exec "$SERVENT" dht run --listen "127.0.0.1:$OUR_PORT" --data "$work/ours-data") > "$work/ours.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q 'listening on udp' "$work/ours.log" && break; sleep 0.1; done

# libtorrent puts "from libtorrent", prints the target, then waits for the file "$work/ours"
# (the target of our item) and fetches it.
cat > "$work/lt.py" <<PY
import os, sys, time
import libtorrent as lt
s = lt.session({
    'listen_interfaces': '127.0.0.1:$LT_PORT',
    'enable_dht': True, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'dht_bootstrap_nodes': '',
    'dht_restrict_routing_ips': False, 'dht_restrict_search_ips': False,
    'alert_mask': lt.alert.category_t.all_categories,
})
s.add_dht_node(('127.0.0.1', $OUR_PORT))
time.sleep(2)
target = s.dht_put_immutable_item('from libtorrent')
print('lt target', target, flush=True)
deadline = time.time() + 60
put_done = False
want = None
mut = None
got_imm = False
while time.time() < deadline:
    if mut is None and os.path.exists('$work/mut'):
        mut = open('$work/mut').read().split()
        s.dht_get_mutable_item(bytes.fromhex(mut[0]), mut[1])
    if want is None and os.path.exists('$work/ours'):
        want = open('$work/ours').read().strip()
        s.dht_get_immutable_item(lt.sha1_hash(bytes.fromhex(want)))
    s.wait_for_alert(500)
    for a in s.pop_alerts():
        if isinstance(a, lt.dht_put_alert) and not put_done:
            put_done = True
            print('lt put done, stored at', a.num_success, flush=True)
        if isinstance(a, lt.dht_immutable_item_alert) and want and str(a.target) == want and not got_imm:
            got_imm = True
            print('lt got', repr(a.item), flush=True)
        if isinstance(a, lt.dht_mutable_item_alert) and mut:
            print('lt mutable seq', a.seq, 'item', repr(a.item), 'authoritative', a.authoritative, flush=True)
            if a.seq == 2:
                sys.exit(0)
print('libtorrent: no item', want, flush=True)
sys.exit(1)
PY
/usr/bin/python3 "$work/lt.py" > "$work/lt.log" 2>&1 &
pids+=($!)

fail() { echo "FAIL: $1"; echo "--- libtorrent"; cat "$work/lt.log"; echo "--- our node"; cat "$work/ours.log"; exit 1; }
for _ in $(seq 60); do grep -q 'lt put done' "$work/lt.log" && break; sleep 0.5; done
grep -q 'lt put done' "$work/lt.log" || fail "libtorrent's put did not finish"
lt_target=$(sed -n 's/^lt target //p' "$work/lt.log")
got=$("$SERVENT" dht get "$lt_target" --bootstrap "127.0.0.1:$OUR_PORT" --timeout 20s) || fail "dht get found no item"
[ "$got" = "from libtorrent" ] || fail "dht get printed '$got'"
echo "we got libtorrent's item: $got"

ours=$("$SERVENT" dht put "from servent" --bootstrap "127.0.0.1:$OUR_PORT" --timeout 20s) || fail "dht put failed"
echo "$ours" > "$work/ours"
for _ in $(seq 60); do grep -q 'lt got' "$work/lt.log" && break; sleep 0.5; done
grep -q "lt got .*'value': b'from servent'" "$work/lt.log" || fail "libtorrent did not get our item"
grep 'lt got' "$work/lt.log"

for v in first second; do
  "$SERVENT" dht put "$v" --key "$work/key" --salt demo --bootstrap "127.0.0.1:$OUR_PORT" --timeout 20s \
    2>> "$work/put.err" > /dev/null || fail "mutable put failed"
done
cat "$work/put.err"
pub=$(sed -n 's/^new key .* (public \([0-9a-f]*\))$/\1/p' "$work/put.err")
[ -n "$pub" ] || fail "no public key printed"
grep -q "(seq 2)" "$work/put.err" || fail "the second put did not use seq 2"
echo "$pub demo" > "$work/mut"
for _ in $(seq 60); do grep -q "lt mutable seq 2 item .*'value': b'second'" "$work/lt.log" && break; sleep 0.5; done
grep -q "lt mutable seq 2 item .*'value': b'second'" "$work/lt.log" || fail "libtorrent did not get our mutable item at seq 2"
grep 'lt mutable' "$work/lt.log"
echo "bep44 interop with libtorrent: ok"
