#!/usr/bin/env bash
# BitTorrent peer interop with Transmission 3.00 (transmission-daemon + transmission-remote),
# in two network namespaces joined by a veth pair, so that both sides have addresses outside
# 127/8 (Transmission never dials peers in 127/8) and each side dials the other:
#
#   host A (10.254.0.1): transmission-daemon (DHT, LPD, uTP, port mapping off; encryption
#                        "tolerated", i.e. plaintext preferred)
#   host B (10.254.0.2): our tracker, Debian's opentracker, and servent
#
# For each tracker (ours, opentracker): Transmission seeds and `servent torrent get`
# downloads; `servent torrent seed` seeds and Transmission downloads. The peers learn each
# other only from the tracker. Transmission keeps one peer record per IP, so each run gets a
# fresh daemon. Content: a multi-file torrent; every file compared byte for byte (cmp).
#
# Standalone: `sudo SERVENT=target/release/servent scripts/interop.d/51-bittorrent-transmission.sh`,
# or `scripts/interop bittorrent-transmission`. Each check prints PASS or FAIL; exits 0 only
# when every check held; removes its namespaces and processes on every exit.
# needs: transmission-daemon transmission-cli opentracker iproute2 curl
root=$(cd "$(dirname "$0")/../.." && pwd)
SERVENT=${SERVENT:-$root/target/release/servent}
WORK=${WORK:-$(mktemp -d)}
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
[ -x "$SERVENT" ] || { echo "no servent binary at $SERVENT" >&2; exit 1; }
for c in transmission-daemon transmission-remote opentracker ip curl; do
  command -v "$c" >/dev/null || { echo "missing $c" >&2; exit 1; }
done
# shellcheck source=lib.sh
source "$root/scripts/interop.d/lib.sh"   # netns_pair, in_ns_bg, netns_cleanup (on EXIT)
set +e
set -uo pipefail

A() { ip netns exec "$NS_A" "$@"; }
B() { ip netns exec "$NS_B" "$@"; }
stop() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; true; }
wait_tcp() { # NS HOST PORT
  for _ in $(seq 100); do ip netns exec "$1" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
fails=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }

netns_pair

mkdir -p "$WORK/src/shots/raw"
head -c 3500000 /dev/urandom > "$WORK/src/shots/raw/one.bin"
head -c 999999 /dev/urandom > "$WORK/src/shots/two.bin"
head -c 4321 /dev/urandom > "$WORK/src/shots/notes.txt"
same_tree() { diff -r "$WORK/src/shots" "$1/shots" >/dev/null && \
  for f in raw/one.bin two.bin notes.txt; do cmp -s "$WORK/src/shots/$f" "$1/shots/$f" || return 1; done; }

# Trackers on host B.
TP=6969; OP=6970
in_ns_bg "$NS_B" "$SERVENT" -v torrent tracker --listen "$ADDR_B:$TP" --interval 5 > "$WORK/tracker.log" 2>&1
wait_tcp "$NS_B" "$ADDR_B" "$TP" || { echo "our tracker did not start"; cat "$WORK/tracker.log"; exit 1; }
"$SERVENT" torrent create "$WORK/src/shots" -t "http://$ADDR_B:$TP/announce" --piece-size 128K \
  --torrent-file "$WORK/servent-tracker.torrent" >/dev/null || { echo "torrent create failed"; exit 1; }
"$SERVENT" torrent create "$WORK/src/shots" -t "http://$ADDR_B:$OP/announce" --piece-size 128K \
  --torrent-file "$WORK/opentracker.torrent" >/dev/null
IH=$("$SERVENT" torrent show "$WORK/opentracker.torrent" | awk '/^info-hash:/ { print $2 }')
mkdir -p "$WORK/ot" && chmod 755 "$WORK/ot" && echo "$IH" > "$WORK/ot/whitelist"
in_ns_bg "$NS_B" opentracker -i "$ADDR_B" -p "$OP" -P "$OP" -d "$WORK/ot" -u nobody -w /whitelist > "$WORK/ot.log" 2>&1
wait_tcp "$NS_B" "$ADDR_B" "$OP" || { echo "opentracker did not start"; cat "$WORK/ot.log"; exit 1; }
ihq=$(echo "$IH" | sed 's/../%&/g')
for _ in $(seq 50); do   # opentracker loads its whitelist shortly after it starts
  B curl -s "http://$ADDR_B:$OP/announce?info_hash=$ihq&peer_id=-XX0000-000000000000&port=1&uploaded=0&downloaded=0&left=0&compact=1&event=stopped" \
    | grep -q failure || break
  sleep 0.2
done

# A fresh transmission-daemon on host A; sets TR_PID and TR_RPC (its RPC port on A's loopback).
TR_N=0
tr_start() {
  TR_N=$((TR_N + 1))
  local cfg="$WORK/tr$TR_N"
  mkdir -p "$cfg/dl"
  TR_RPC=9091
  in_ns_bg "$NS_A" transmission-daemon -f -g "$cfg" -p "$TR_RPC" -P 51413 -T -O -Y --no-utp -M -et \
    -w "$cfg/dl" --no-incomplete-dir -i "$ADDR_A" -r 127.0.0.1 -a 127.0.0.1 -e "$cfg/log" --log-info \
    > "$cfg/out" 2>&1
  TR_PID=$!
  for _ in $(seq 100); do A transmission-remote "$TR_RPC" -l >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "transmission-daemon did not start"; cat "$cfg/out"; return 1
}
tr_done() { A transmission-remote "$TR_RPC" -t 1 -i 2>/dev/null | grep -q 'Percent Done: 100%'; }
tr_info() { A transmission-remote "$TR_RPC" -t 1 -i 2>&1 | grep -E 'State|Percent|Error|Peers|Downloaded|Uploaded'; A transmission-remote "$TR_RPC" -t 1 -it 2>&1 | head -20; }

for tr in servent-tracker opentracker; do
  t="$WORK/$tr.torrent"

  # Transmission seeds, we download (we dial Transmission at the address the tracker gives).
  tr_start || { fail "transmission-daemon starts"; continue; }
  A transmission-remote "$TR_RPC" -a "$t" -w "$WORK/src" >/dev/null
  for _ in $(seq 100); do tr_done && break; sleep 0.1; done
  sleep 1   # its first announce
  start=$EPOCHREALTIME
  if timeout 60 ip netns exec "$NS_B" "$SERVENT" -v torrent get "$t" -o "$WORK/got-$tr" --listen "$ADDR_B:0" \
      > "$WORK/get-$tr.log" 2>&1 && same_tree "$WORK/got-$tr"; then
    pass "Transmission seeds, servent downloads through $tr ($(since "$start") s), files identical"
  else
    fail "Transmission seeds, servent downloads through $tr"; tail -5 "$WORK/get-$tr.log"; tr_info
  fi
  stop "$TR_PID"

  # We seed, Transmission downloads (it dials us: 10.254.0.2 is outside 127/8).
  in_ns_bg "$NS_B" "$SERVENT" -v torrent seed "$t" "$WORK/src/shots" --listen "$ADDR_B:6881" \
    > "$WORK/seed-$tr.log" 2>&1
  sd=$!
  wait_tcp "$NS_B" "$ADDR_B" 6881; sleep 1   # it announces after its hash check
  tr_start || { fail "transmission-daemon starts"; continue; }
  start=$EPOCHREALTIME
  A transmission-remote "$TR_RPC" -a "$t" -w "$WORK/tr-got-$tr" >/dev/null
  for _ in $(seq 600); do tr_done && break; sleep 0.1; done
  if tr_done && same_tree "$WORK/tr-got-$tr"; then
    pass "servent seeds, Transmission downloads through $tr ($(since "$start") s), files identical"
  else
    fail "servent seeds, Transmission downloads through $tr"; tr_info; tail -5 "$WORK/seed-$tr.log"
  fi
  stop "$TR_PID"; stop "$sd"
done

echo "bittorrent-transmission: $fails failed"
[ $fails = 0 ]
