#!/usr/bin/env bash
# BitTorrent peer interop with libtorrent (python3-libtorrent, Debian's /usr/bin/python3) on
# 127.0.0.1, once through our tracker (`servent torrent tracker`) and once through Debian's
# opentracker: libtorrent seeds and `servent torrent get` downloads; `servent torrent seed`
# seeds and libtorrent downloads. Content: a multi-file torrent (nested folders, sizes not a
# multiple of the piece size); every file compared byte for byte (cmp). The peers find each
# other only through the tracker (no --peer, no DHT, no LSD).
#
# libtorrent on loopback needs allow_multiple_connections_per_ip (every peer is 127.0.0.1).
# opentracker serves only whitelisted info-hashes and lists the announcing peer itself.
#
# Standalone: `sudo SERVENT=target/release/servent scripts/interop.d/53-bittorrent-libtorrent.sh`,
# or `scripts/interop bittorrent-libtorrent`. Each check prints PASS or FAIL; exits 0 only
# when every check held.
# needs: python3-libtorrent opentracker curl
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
SERVENT=${SERVENT:-$root/target/release/servent}
WORK=${WORK:-$(mktemp -d)}
[ -x "$SERVENT" ] || { echo "no servent binary at $SERVENT" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (opentracker chroots into its folder)" >&2; exit 1; }
command -v opentracker >/dev/null || { echo "missing opentracker" >&2; exit 1; }
/usr/bin/python3 -c 'import libtorrent' || { echo "missing python3-libtorrent" >&2; exit 1; }

PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
stop() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null || true; }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

fails=0
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }

# Content: a folder of three files in nested folders, ~4.3 MiB, 256 KiB pieces.
mkdir -p "$WORK/src/album/disc 2"
head -c 3000000 /dev/urandom > "$WORK/src/album/one.bin"
head -c 1234567 /dev/urandom > "$WORK/src/album/disc 2/two.bin"
head -c 12345 /dev/urandom > "$WORK/src/album/disc 2/three.txt"
same_tree() { diff -r "$WORK/src/album" "$1/album" >/dev/null && \
  for f in one.bin "disc 2/two.bin" "disc 2/three.txt"; do cmp -s "$WORK/src/album/$f" "$1/album/$f" || return 1; done; }

# libtorrent as a seeder or a leecher: lt.py seed|get TORRENT DIR PORT SECONDS
cat > "$WORK/lt.py" <<'PY'
import sys, time
import libtorrent as lt
mode, torrent, folder, port, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
s = lt.session({
    'listen_interfaces': '127.0.0.1:%d' % port,
    'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'allow_multiple_connections_per_ip': True,
    'alert_mask': lt.alert.category_t.error_notification | lt.alert.category_t.status_notification,
})
p = lt.add_torrent_params()
p.ti = lt.torrent_info(torrent)
p.save_path = folder
h = s.add_torrent(p)
deadline = time.time() + seconds
said = False
while time.time() < deadline:
    s.wait_for_alert(200)
    for a in s.pop_alerts():
        if a.category() & lt.alert.category_t.error_notification:
            print('lt alert:', a.message(), flush=True)
    st = h.status()
    if mode == 'seed' and st.is_seeding and not said:
        print('lt seeding', flush=True); said = True
    if mode == 'get' and st.is_seeding:
        print('lt complete: %d bytes downloaded, %d peers' % (st.total_payload_download, st.num_peers), flush=True)
        sys.exit(0)
if mode == 'get':
    st = h.status()
    print('lt timed out at %.1f%%, %d peers' % (st.progress * 100, st.num_peers), flush=True)
    sys.exit(1)
PY

# Trackers: ours, and opentracker (chrooted into its folder, whitelist loaded after start).
TP=$(free_port)
"$SERVENT" torrent tracker --listen "127.0.0.1:$TP" --interval 5 > "$WORK/tracker.log" 2>&1 &
PIDS+=($!)
wait_port "$TP" || { echo "our tracker did not start"; cat "$WORK/tracker.log"; exit 1; }

declare -A URL
URL[servent-tracker]="http://127.0.0.1:$TP/announce"
"$SERVENT" torrent create "$WORK/src/album" -t "${URL[servent-tracker]}" --piece-size 256K \
  --torrent-file "$WORK/servent-tracker.torrent" >/dev/null || { echo "torrent create failed"; exit 1; }
IH=$("$SERVENT" torrent show "$WORK/servent-tracker.torrent" | awk '/^info-hash:/ { print $2 }')

OP=$(free_port)
mkdir -p "$WORK/ot" && chmod 755 "$WORK/ot" && echo "$IH" > "$WORK/ot/whitelist"
opentracker -i 127.0.0.1 -p "$OP" -P "$OP" -d "$WORK/ot" -u nobody -w /whitelist > "$WORK/ot.log" 2>&1 &
PIDS+=($!)
wait_port "$OP" || { echo "opentracker did not start"; cat "$WORK/ot.log"; exit 1; }
URL[opentracker]="http://127.0.0.1:$OP/announce"
"$SERVENT" torrent create "$WORK/src/album" -t "${URL[opentracker]}" --piece-size 256K \
  --torrent-file "$WORK/opentracker.torrent" >/dev/null
# opentracker reads its whitelist shortly after it starts: wait until it serves our hash.
ihq=$(echo "$IH" | sed 's/../%&/g')
for _ in $(seq 50); do
  curl -s "${URL[opentracker]}?info_hash=$ihq&peer_id=-XX0000-000000000000&port=1&uploaded=0&downloaded=0&left=0&compact=1&event=stopped" \
    | grep -q 'failure' || break
  sleep 0.2
done

for tr in servent-tracker opentracker; do
  t="$WORK/$tr.torrent"

  # libtorrent seeds, we download.
  LP=$(free_port)
  /usr/bin/python3 "$WORK/lt.py" seed "$t" "$WORK/src" "$LP" 100 > "$WORK/lt-seed-$tr.log" 2>&1 &
  lt=$!; PIDS+=($lt)
  for _ in $(seq 100); do grep -q 'lt seeding' "$WORK/lt-seed-$tr.log" && break; sleep 0.1; done
  start=$EPOCHREALTIME
  if timeout 60 "$SERVENT" -v torrent get "$t" -o "$WORK/got-$tr" > "$WORK/get-$tr.log" 2>&1 \
      && same_tree "$WORK/got-$tr"; then
    pass "libtorrent seeds, servent downloads through $tr ($(since $start) s), files identical"
  else
    fail "libtorrent seeds, servent downloads through $tr"; tail -5 "$WORK/get-$tr.log"; cat "$WORK/lt-seed-$tr.log"
  fi
  stop $lt

  # We seed, libtorrent downloads.
  SP=$(free_port)
  "$SERVENT" -v torrent seed "$t" "$WORK/src/album" --listen "127.0.0.1:$SP" > "$WORK/seed-$tr.log" 2>&1 &
  sd=$!; PIDS+=($sd)
  wait_port "$SP"
  start=$EPOCHREALTIME
  if /usr/bin/python3 "$WORK/lt.py" get "$t" "$WORK/lt-got-$tr" "$(free_port)" 60 > "$WORK/lt-get-$tr.log" 2>&1 \
      && same_tree "$WORK/lt-got-$tr"; then
    pass "servent seeds, libtorrent downloads through $tr ($(since $start) s), files identical"
  else
    fail "servent seeds, libtorrent downloads through $tr"; cat "$WORK/lt-get-$tr.log"; tail -5 "$WORK/seed-$tr.log"
  fi
  stop $sd
done

echo "bittorrent-libtorrent: $fails failed"
[ $fails = 0 ]
