# Our DHT node and python3-libtorrent's DHT on 127.0.0.1 exchange KRPC: libtorrent finds the
# peer we announced, and we find the peer libtorrent announced.
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

OUR=127.0.0.1:16881
LT_PORT=16882
IH_LT=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa  # libtorrent's torrent (announced on its port)
IH_US=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb  # announced by us (peer port 7777)

(cd "$work" && exec "$SERVENT" dht run --listen "$OUR" --data "$work/ours") > "$work/ours.log" 2>&1 &
pids+=($!)
sleep 1

# libtorrent: add our node (add_dht_node, not a bootstrap router), add a magnet link for IH_LT
# (libtorrent announces it to the DHT on its listen port; its Python binding cannot call
# dht_announce directly: the flags type is not exported), then wait until it finds the peer
# of IH_US, which we announce meanwhile.
cat > "$work/lt.py" <<PY
import sys, time
import libtorrent as lt
s = lt.session({
    'listen_interfaces': '127.0.0.1:$LT_PORT',
    'enable_dht': True, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'dht_bootstrap_nodes': '',
    'dht_restrict_routing_ips': False, 'dht_restrict_search_ips': False,
    'alert_mask': lt.alert.category_t.all_categories,
})
s.add_dht_node(('127.0.0.1', ${OUR##*:}))
p = lt.parse_magnet_uri('magnet:?xt=urn:btih:$IH_LT')
p.save_path = '$work'
s.add_torrent(p)
ih_us = lt.sha1_hash(bytes.fromhex('$IH_US'))
deadline = time.time() + 60
announced = False
while time.time() < deadline:
    s.dht_get_peers(ih_us)
    end = time.time() + 2
    while time.time() < end:
        s.wait_for_alert(500)
        for a in s.pop_alerts():
            if isinstance(a, lt.dht_get_peers_reply_alert) and str(a.info_hash) == '$IH_US':
                peers = [str(p) for p in a.peers()]
                if any('7777' in p for p in peers):
                    print('libtorrent found', peers, flush=True)
                    # keep its DHT up so that we can look up what it announced
                    time.sleep(30)
                    sys.exit(0)
print('libtorrent: no peer for $IH_US', flush=True)
sys.exit(1)
PY
/usr/bin/python3 "$work/lt.py" > "$work/lt.log" 2>&1 &
lt_pid=$!
pids+=($lt_pid)
sleep 5

"$SERVENT" dht announce "$IH_US" --port 7777 --bootstrap "$OUR"

found=""
for _ in $(seq 10); do
  if out=$("$SERVENT" dht lookup "$IH_LT" --bootstrap "$OUR" --timeout 20s 2>/dev/null); then
    echo "$out"
    if echo "$out" | grep -qx "127.0.0.1:$LT_PORT"; then found=yes; break; fi
  fi
  sleep 2
done
[ -n "$found" ] || { echo "we did not find libtorrent's peer"; cat "$work/lt.log"; exit 1; }

for _ in $(seq 60); do grep -q 'libtorrent found' "$work/lt.log" && break; sleep 1; done
cat "$work/lt.log"
grep -q 'libtorrent found' "$work/lt.log" || { echo "libtorrent did not find our peer"; exit 1; }
echo "dht interop with libtorrent: ok"
