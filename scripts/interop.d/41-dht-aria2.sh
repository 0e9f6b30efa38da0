# Our DHT node and aria2's DHT on 127.0.0.1 exchange KRPC. aria2 runs its DHT only during a
# download, so it is started on a magnet link for an info-hash we announced first. Checks:
# aria2's get_peers reaches our node and is answered, aria2 takes the peer we announced
# (and dials it), aria2's announce_peer is accepted by our node, and `servent dht lookup`
# finds aria2's peer.
# needs: aria2
set -euo pipefail
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

OUR_PORT=16891
ARIA_DHT_PORT=16892
ARIA_BT_PORT=16893
IH=cccccccccccccccccccccccccccccccccccccccc

(cd "$work" && exec "$SERVENT" dht run --listen "127.0.0.1:$OUR_PORT" --data "$work/ours") > "$work/ours.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q 'listening on udp' "$work/ours.log" && break; sleep 0.1; done

# our peer (port 7777, nothing listens there) for the torrent aria2 will look up
"$SERVENT" dht announce "$IH" --port 7777 --bootstrap "127.0.0.1:$OUR_PORT" --timeout 20s

mkdir "$work/dl"
timeout 90 aria2c --enable-dht=true --dht-listen-addr=127.0.0.1 --dht-listen-port=$ARIA_DHT_PORT \
  --dht-entry-point="127.0.0.1:$OUR_PORT" --dht-file-path="$work/dht.dat" \
  --listen-port=$ARIA_BT_PORT --bt-enable-lpd=false --enable-peer-exchange=false \
  --dir="$work/dl" --log="$work/aria2.log" --log-level=debug --summary-interval=0 \
  "magnet:?xt=urn:btih:$IH" > "$work/aria2.out" 2>&1 &
pids+=($!)

fail() {
  echo "FAIL: $1"
  echo "--- our node"; cat "$work/ours.log"
  echo "--- aria2 (KRPC lines)"; grep -E 'dht (query|response)' "$work/aria2.log" | tail -20 || true
  exit 1
}
# wait (at most 40 s) until aria2 has announced itself to us
for _ in $(seq 80); do
  grep -q "announce $IH 127.0.0.1:$ARIA_BT_PORT" "$work/ours.log" && break
  sleep 0.5
done

grep -Eq "Message sent: dht query get_peers .*Remote:127\.0\.0\.1\($OUR_PORT\).*info_hash=$IH" "$work/aria2.log" \
  || fail "aria2 sent no get_peers to our node"
grep -Eq "Message received: dht response get_peers .*Remote:127\.0\.0\.1\($OUR_PORT\).*values=[1-9]" "$work/aria2.log" \
  || fail "aria2 got no get_peers answer with values from our node"
grep -q "Adding peer 127.0.0.1:7777" "$work/aria2.log" || fail "aria2 did not take the peer we announced"
dialed=""
for _ in $(seq 40); do  # aria2 dials a few seconds after taking the peer
  grep -q "Connecting to 127.0.0.1:7777" "$work/aria2.log" && { dialed=yes; break; }
  sleep 0.5
done
[ -n "$dialed" ] || fail "aria2 did not dial the peer we announced"
grep -q "announce $IH 127.0.0.1:$ARIA_BT_PORT" "$work/ours.log" || fail "aria2's announce_peer did not reach our node"

out=$("$SERVENT" dht lookup "$IH" --bootstrap "127.0.0.1:$OUR_PORT" --timeout 20s) || fail "dht lookup found nothing"
echo "$out"
echo "$out" | grep -qx "127.0.0.1:$ARIA_BT_PORT" || fail "dht lookup did not find aria2's peer"
echo "dht interop with aria2: ok"
