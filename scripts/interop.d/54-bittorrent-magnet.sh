#!/usr/bin/env bash
# Magnet links (BEP 9 metadata exchange over BEP 10) with libtorrent and aria2 on 127.0.0.1,
# through our tracker (the magnet's tr= parameter): `servent torrent get MAGNET` fetches the
# info dictionary from a libtorrent or aria2 seeder and then the content; libtorrent and
# aria2, given only the magnet link, fetch the metadata from `servent torrent seed` and then
# the content. Content: a multi-file torrent; every file compared byte for byte (cmp), and
# the metadata the magnet clients built must give the same info-hash.
#
# libtorrent on loopback needs allow_multiple_connections_per_ip (every peer is 127.0.0.1).
#
# Standalone: `sudo SERVENT=target/release/servent scripts/interop.d/54-bittorrent-magnet.sh`,
# or `scripts/interop bittorrent-magnet`. Each check prints PASS or FAIL; exits 0 only
# when every check held.
# needs: python3-libtorrent aria2
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
SERVENT=${SERVENT:-$root/target/release/servent}
WORK=${WORK:-$(mktemp -d)}
[ -x "$SERVENT" ] || { echo "no servent binary at $SERVENT" >&2; exit 1; }
command -v aria2c >/dev/null || { echo "missing aria2c" >&2; exit 1; }
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

# libtorrent: lt.py seed TORRENT DIR PORT SECONDS, or lt.py get MAGNET DIR PORT SECONDS
cat > "$WORK/lt.py" <<'PY'
import sys, time
import libtorrent as lt
mode, src, folder, port, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
s = lt.session({
    'listen_interfaces': '127.0.0.1:%d' % port,
    'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'allow_multiple_connections_per_ip': True,
})
if mode == 'seed':
    p = lt.add_torrent_params(); p.ti = lt.torrent_info(src)
else:
    p = lt.parse_magnet_uri(src)
p.save_path = folder
h = s.add_torrent(p)
deadline = time.time() + seconds
said = False
while time.time() < deadline:
    time.sleep(0.1)
    st = h.status()
    if mode == 'seed' and st.is_seeding and not said:
        print('lt seeding', flush=True); said = True
    if mode == 'get' and st.is_seeding:
        print('lt complete: info-hash %s' % h.torrent_file().info_hashes().v1, flush=True)
        sys.exit(0)
if mode == 'get':
    st = h.status()
    print('lt timed out at %.1f%%, %d peers, metadata %s' % (st.progress * 100, st.num_peers, st.has_metadata), flush=True)
    sys.exit(1)
PY
aria2_args=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --console-log-level=notice
  --summary-interval=0 --file-allocation=none --bt-tracker-interval=5 --disable-ipv6=true)

TP=$(free_port)
"$SERVENT" -v torrent tracker --listen "127.0.0.1:$TP" --interval 5 > "$WORK/tracker.log" 2>&1 &
PIDS+=($!)
wait_port "$TP" || { echo "our tracker did not start"; cat "$WORK/tracker.log"; exit 1; }
"$SERVENT" torrent create "$WORK/src/album" -t "http://127.0.0.1:$TP/announce" --piece-size 256K \
  --torrent-file "$WORK/album.torrent" >/dev/null || { echo "torrent create failed"; exit 1; }
IH=$("$SERVENT" torrent show "$WORK/album.torrent" | awk '/^info-hash:/ { print $2 }')
MAGNET=$("$SERVENT" torrent show "$WORK/album.torrent" | awk '/^magnet:/ { print $2 }')
echo "magnet: $MAGNET"

# 1. libtorrent seeds, we get the magnet.
/usr/bin/python3 "$WORK/lt.py" seed "$WORK/album.torrent" "$WORK/src" "$(free_port)" 100 > "$WORK/lt-seed.log" 2>&1 &
l=$!; PIDS+=($l)
for _ in $(seq 100); do grep -qs 'lt seeding' "$WORK/lt-seed.log" && break; sleep 0.1; done
start=$EPOCHREALTIME
if timeout 60 "$SERVENT" -v torrent get "$MAGNET" -o "$WORK/got-lt" > "$WORK/get-lt.log" 2>&1 && same_tree "$WORK/got-lt"; then
  pass "libtorrent seeds, servent gets the magnet link (metadata, then content; $(since "$start") s), files identical"
else fail "libtorrent seeds, servent gets the magnet link"; tail -5 "$WORK/get-lt.log"; cat "$WORK/lt-seed.log"; fi
stop $l

# 2. aria2 seeds, we get the magnet.
AP=$(free_port)
aria2c -d "$WORK/src" --check-integrity=true --seed-ratio=0.0 --seed-time=2 --listen-port="$AP" \
  "${aria2_args[@]}" "$WORK/album.torrent" > "$WORK/aria2-seed.log" 2>&1 &
a=$!; PIDS+=($a)
wait_port "$AP"; sleep 1
start=$EPOCHREALTIME
if timeout 60 "$SERVENT" -v torrent get "$MAGNET" -o "$WORK/got-aria2" > "$WORK/get-aria2.log" 2>&1 && same_tree "$WORK/got-aria2"; then
  pass "aria2 seeds, servent gets the magnet link (metadata, then content; $(since "$start") s), files identical"
else fail "aria2 seeds, servent gets the magnet link"; tail -5 "$WORK/get-aria2.log"; tail -5 "$WORK/aria2-seed.log"; fi
stop $a

# 3. We seed, libtorrent gets the magnet (the metadata comes from us: we are the only peer).
SP=$(free_port)
"$SERVENT" -v torrent seed "$WORK/album.torrent" "$WORK/src/album" --listen "127.0.0.1:$SP" > "$WORK/seed.log" 2>&1 &
sd=$!; PIDS+=($sd)
wait_port "$SP"; sleep 1
start=$EPOCHREALTIME
if /usr/bin/python3 "$WORK/lt.py" get "$MAGNET" "$WORK/lt-got" "$(free_port)" 60 > "$WORK/lt-get.log" 2>&1 \
    && grep -q "info-hash $IH" "$WORK/lt-get.log" && same_tree "$WORK/lt-got"; then
  pass "servent seeds, libtorrent gets the magnet link (our metadata has the info-hash; $(since "$start") s), files identical"
else fail "servent seeds, libtorrent gets the magnet link"; cat "$WORK/lt-get.log"; tail -5 "$WORK/seed.log"; fi

# 4. We seed, aria2 gets the magnet.
start=$EPOCHREALTIME
if timeout 60 aria2c -d "$WORK/aria2-got" --seed-time=0 --listen-port="$(free_port)" "${aria2_args[@]}" \
    "$MAGNET" > "$WORK/aria2-get.log" 2>&1 && same_tree "$WORK/aria2-got"; then
  pass "servent seeds, aria2 gets the magnet link ($(since "$start") s), files identical"
else fail "servent seeds, aria2 gets the magnet link"; grep -v '^\[#' "$WORK/aria2-get.log" | tail -8; tail -5 "$WORK/seed.log"; fi
stop $sd

echo "bittorrent-magnet: $fails failed"
[ $fails = 0 ]
