#!/usr/bin/env bash
# BitTorrent peer interop with aria2 (aria2c 1.36) on 127.0.0.1, once through our tracker
# (`servent torrent tracker`) and once through Debian's opentracker: aria2 seeds and
# `servent torrent get` downloads; `servent torrent seed` seeds and aria2 downloads. Content:
# a multi-file torrent (nested folders, sizes not a multiple of the piece size); every file
# compared byte for byte (cmp). The peers find each other only through the tracker (no --peer,
# no DHT, no LSD).
#
# aria2 announces with compact=1 (opentracker answers compact=0 with HTTP 400); with
# --seed-time=0 it leaves right after completing and announces `stopped`, never `completed`.
# opentracker serves only whitelisted info-hashes and lists the announcing peer itself.
#
# Standalone: `sudo SERVENT=target/release/servent scripts/interop.d/52-bittorrent-aria2.sh`,
# or `scripts/interop bittorrent-aria2`. Each check prints PASS or FAIL; exits 0 only
# when every check held.
# needs: aria2 opentracker curl
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
SERVENT=${SERVENT:-$root/target/release/servent}
WORK=${WORK:-$(mktemp -d)}
[ -x "$SERVENT" ] || { echo "no servent binary at $SERVENT" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (opentracker chroots into its folder)" >&2; exit 1; }
for c in opentracker aria2c curl /usr/bin/python3; do
  command -v "$c" >/dev/null || { echo "missing $c" >&2; exit 1; }
done

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

aria2_args=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --console-log-level=notice
  --summary-interval=0 --file-allocation=none --bt-tracker-interval=5 --disable-ipv6=true)

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

  # aria2 seeds, we download.
  AP=$(free_port)
  aria2c -d "$WORK/src" --check-integrity=true --seed-ratio=0.0 --seed-time=2 --listen-port="$AP" \
    "${aria2_args[@]}" "$t" > "$WORK/aria2-seed-$tr.log" 2>&1 &
  a=$!; PIDS+=($a)
  wait_port "$AP"; sleep 1   # it announces after its hash check
  start=$EPOCHREALTIME
  if timeout 60 "$SERVENT" -v torrent get "$t" -o "$WORK/got-$tr" > "$WORK/get-$tr.log" 2>&1 \
      && same_tree "$WORK/got-$tr"; then
    pass "aria2 seeds, servent downloads through $tr ($(since $start) s), files identical"
  else
    fail "aria2 seeds, servent downloads through $tr"; tail -5 "$WORK/get-$tr.log"; tail -5 "$WORK/aria2-seed-$tr.log"
  fi
  stop $a

  # We seed, aria2 downloads.
  SP=$(free_port)
  "$SERVENT" -v torrent seed "$t" "$WORK/src/album" --listen "127.0.0.1:$SP" > "$WORK/seed-$tr.log" 2>&1 &
  sd=$!; PIDS+=($sd)
  wait_port "$SP"; sleep 1   # it announces after its hash check
  start=$EPOCHREALTIME
  if timeout 60 aria2c -d "$WORK/aria2-got-$tr" --seed-time=0 --listen-port="$(free_port)" "${aria2_args[@]}" \
      "$t" > "$WORK/aria2-get-$tr.log" 2>&1 && same_tree "$WORK/aria2-got-$tr"; then
    pass "servent seeds, aria2 downloads through $tr ($(since $start) s), files identical"
  else
    fail "servent seeds, aria2 downloads through $tr"; tail -5 "$WORK/aria2-get-$tr.log"; tail -5 "$WORK/seed-$tr.log"
  fi
  stop $sd
done

echo "bittorrent-aria2: $fails failed"
[ $fails = 0 ]
