#!/usr/bin/env bash
# Our tracker (`servent torrent tracker`) introduces real clients to each other on 127.0.0.1:
# aria2 seeds and libtorrent downloads, libtorrent seeds and aria2 downloads, Transmission
# seeds and aria2 downloads, libtorrent seeds and Transmission downloads. No client is told
# the other's address: each learns it only from our tracker's announce reply. A separate
# torrent (own content, own info-hash) for each pair; every file compared byte for byte.
# Also: the UDP tracker protocol (BEP 15) serves aria2 and libtorrent the same way, and a
# scrape answers with the right counts.
#
# Transmission 3.00 never dials peers in 127/8 (it accepts them), so in the pair where it
# downloads, it announces first and the seeder (libtorrent) dials it; it keeps one peer
# record per IP, so each pair gets a fresh transmission-daemon. libtorrent needs
# allow_multiple_connections_per_ip on loopback.
#
# Standalone: `sudo SERVENT=target/release/servent scripts/interop.d/55-bittorrent-tracker.sh`,
# or `scripts/interop bittorrent-tracker`. Each check prints PASS or FAIL; exits 0 only when
# every check held.
# needs: aria2 python3-libtorrent transmission-daemon transmission-cli curl
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
SERVENT=${SERVENT:-$root/target/release/servent}
WORK=${WORK:-$(mktemp -d)}
[ -x "$SERVENT" ] || { echo "no servent binary at $SERVENT" >&2; exit 1; }
for c in aria2c transmission-daemon transmission-remote curl; do
  command -v "$c" >/dev/null || { echo "missing $c" >&2; exit 1; }
done
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
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

fails=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }

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

TP=$(free_port)
"$SERVENT" -v torrent tracker --listen "127.0.0.1:$TP" --interval 5 > "$WORK/tracker.log" 2>&1 &
PIDS+=($!)
wait_port "$TP" || { echo "our tracker did not start"; cat "$WORK/tracker.log"; exit 1; }
HTTP="http://127.0.0.1:$TP/announce"
UDP="udp://127.0.0.1:$TP"

# make NAME URL: a folder of two files (own random content) and its torrent
make() {
  mkdir -p "$WORK/src/$1/sub"
  head -c 2500000 /dev/urandom > "$WORK/src/$1/big.bin"
  head -c 77777 /dev/urandom > "$WORK/src/$1/sub/small.bin"
  "$SERVENT" torrent create "$WORK/src/$1" -t "$2" --piece-size 64K --torrent-file "$WORK/$1.torrent" >/dev/null
}
same() { diff -r "$WORK/src/$1" "$2/$1" >/dev/null && cmp -s "$WORK/src/$1/big.bin" "$2/$1/big.bin"; }
aria2_args=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --console-log-level=warn
  --summary-interval=0 --file-allocation=none --bt-tracker-interval=5 --disable-ipv6=true)

# transmission-daemon with its own config folder; prints its RPC port
tr_start() { # NAME
  local cfg="$WORK/tr-$1" rpc peer
  rpc=$(free_port); peer=$(free_port)
  mkdir -p "$cfg/dl"
  transmission-daemon -f -g "$cfg" -p "$rpc" -P "$peer" -T -O -Y --no-utp -M -et \
    -w "$cfg/dl" --no-incomplete-dir -i 127.0.0.1 -r 127.0.0.1 -a 127.0.0.1 \
    -e "$cfg/log" --log-info > "$cfg/out" 2>&1 &
  PIDS+=($!); echo "$! $rpc"
}
tr_done() { transmission-remote "$1" -t 1 -i 2>/dev/null | grep -q 'Percent Done: 100%'; }

# A. aria2 seeds, libtorrent downloads.
make pairA "$HTTP"
aria2c -d "$WORK/src" --check-integrity=true --seed-ratio=0.0 --seed-time=2 --listen-port="$(free_port)" \
  "${aria2_args[@]}" "$WORK/pairA.torrent" > "$WORK/aria2-A.log" 2>&1 &
a=$!; PIDS+=($a)
sleep 1
start=$EPOCHREALTIME
if /usr/bin/python3 "$WORK/lt.py" get "$WORK/pairA.torrent" "$WORK/gotA" "$(free_port)" 60 > "$WORK/lt-A.log" 2>&1 \
    && same pairA "$WORK/gotA"; then
  pass "our tracker: aria2 seeds, libtorrent downloads ($(since "$start") s), files identical"
else fail "our tracker: aria2 seeds, libtorrent downloads"; cat "$WORK/lt-A.log"; tail -5 "$WORK/aria2-A.log"; fi
stop $a
# A scrape (HTTP) shows what the tracker saw of pairA: libtorrent announced `completed`
# (aria2 with --seed-time=0 never does: it goes straight to `stopped`).
ih=$("$SERVENT" torrent show "$WORK/pairA.torrent" | awk '/^info-hash:/ { print $2 }' | sed 's/../%&/g')
scrape=$(curl -s "http://127.0.0.1:$TP/scrape?info_hash=$ih")
if grep -q '8:completei[1-9]' <<<"$scrape" && grep -q '10:downloadedi1e' <<<"$scrape"; then
  pass "our tracker's scrape counts pairA's seeders and its one completed download"
else fail "our tracker's scrape counts pairA's seeders and its one completed download: $(cat -v <<<"$scrape")"; fi

# B. libtorrent seeds, aria2 downloads (through the UDP tracker protocol).
make pairB "$UDP"
/usr/bin/python3 "$WORK/lt.py" seed "$WORK/pairB.torrent" "$WORK/src" "$(free_port)" 90 > "$WORK/lt-B.log" 2>&1 &
l=$!; PIDS+=($l)
for _ in $(seq 100); do grep -qs 'lt seeding' "$WORK/lt-B.log" && break; sleep 0.1; done
start=$EPOCHREALTIME
# (aria2 speaks the UDP tracker protocol only through its DHT socket: "udp is not supported
# yet" without --enable-dht. No DHT entry point is given, so it learns peers only from us.)
if timeout 60 aria2c -d "$WORK/gotB" --seed-time=0 --listen-port="$(free_port)" "${aria2_args[@]}" \
    --enable-dht=true --dht-listen-port="$(free_port)" --dht-file-path="$WORK/aria2-dht.dat" \
    "$WORK/pairB.torrent" > "$WORK/aria2-B.log" 2>&1 && same pairB "$WORK/gotB"; then
  pass "our UDP tracker: libtorrent seeds, aria2 downloads ($(since "$start") s), files identical"
else fail "our UDP tracker: libtorrent seeds, aria2 downloads"; tail -5 "$WORK/aria2-B.log"; cat "$WORK/lt-B.log"; fi
stop $l
# C. Transmission seeds, aria2 downloads (aria2 dials Transmission).
make pairC "$HTTP"
read -r tpid rpc < <(tr_start C); PIDS+=("$tpid")
for _ in $(seq 100); do transmission-remote "$rpc" -l >/dev/null 2>&1 && break; sleep 0.1; done
transmission-remote "$rpc" -a "$WORK/pairC.torrent" -w "$WORK/src" >/dev/null
for _ in $(seq 100); do tr_done "$rpc" && break; sleep 0.1; done
start=$EPOCHREALTIME
if timeout 60 aria2c -d "$WORK/gotC" --seed-time=0 --listen-port="$(free_port)" "${aria2_args[@]}" \
    "$WORK/pairC.torrent" > "$WORK/aria2-C.log" 2>&1 && same pairC "$WORK/gotC"; then
  pass "our tracker: Transmission seeds, aria2 downloads ($(since "$start") s), files identical"
else fail "our tracker: Transmission seeds, aria2 downloads"; tail -5 "$WORK/aria2-C.log"; transmission-remote "$rpc" -t 1 -i | head -20; fi
stop "$tpid"

# D. libtorrent seeds, Transmission downloads: Transmission announces first, libtorrent learns
# its address from our tracker and dials it.
make pairD "$HTTP"
read -r tpid rpc < <(tr_start D); PIDS+=("$tpid")
for _ in $(seq 100); do transmission-remote "$rpc" -l >/dev/null 2>&1 && break; sleep 0.1; done
transmission-remote "$rpc" -a "$WORK/pairD.torrent" -w "$WORK/gotD" >/dev/null
sleep 1
start=$EPOCHREALTIME
/usr/bin/python3 "$WORK/lt.py" seed "$WORK/pairD.torrent" "$WORK/src" "$(free_port)" 70 > "$WORK/lt-D.log" 2>&1 &
l=$!; PIDS+=($l)
for _ in $(seq 600); do tr_done "$rpc" && break; sleep 0.1; done
if tr_done "$rpc" && same pairD "$WORK/gotD"; then
  pass "our tracker: libtorrent seeds, Transmission downloads ($(since "$start") s), files identical"
else fail "our tracker: libtorrent seeds, Transmission downloads"; transmission-remote "$rpc" -t 1 -i | head -20; cat "$WORK/lt-D.log"; fi
stop $l; stop "$tpid"

echo "bittorrent-tracker: $fails failed"
[ $fails = 0 ]
