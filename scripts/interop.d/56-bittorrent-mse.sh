#!/usr/bin/env bash
# Message Stream Encryption (MSE/PE, RC4) with Transmission 3.00, aria2 1.36 and libtorrent
# 2.0.8, every side set to REQUIRE encryption, so a transfer can only complete over an
# encrypted stream. Two network namespaces joined by a veth pair (the other client on
# 10.254.0.1, servent and our tracker on 10.254.0.2: outside 127/8, which Transmission never
# dials). For each client: it seeds and `servent torrent get --encryption require`
# downloads; `servent torrent seed --encryption require` seeds and it downloads. Peers meet
# through our tracker only. Every file compared byte for byte.
#
#   Transmission: transmission-daemon -er (encryption required)
#   aria2:        --bt-require-crypto=true --bt-min-crypto-level=arc4
#   libtorrent:   out_enc_policy = in_enc_policy = pe_forced, allowed_enc_level = pe_rc4
#
# Standalone: `sudo SERVENT=target/release/servent scripts/interop.d/56-bittorrent-mse.sh`,
# or `scripts/interop bittorrent-mse`. Each check prints PASS or FAIL; exits 0 only when
# every check held; removes its namespaces and processes on every exit.
# needs: transmission-daemon transmission-cli aria2 python3-libtorrent iproute2
root=$(cd "$(dirname "$0")/../.." && pwd)
SERVENT=${SERVENT:-$root/target/release/servent}
WORK=${WORK:-$(mktemp -d)}
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
[ -x "$SERVENT" ] || { echo "no servent binary at $SERVENT" >&2; exit 1; }
for c in transmission-daemon transmission-remote aria2c ip; do
  command -v "$c" >/dev/null || { echo "missing $c" >&2; exit 1; }
done
/usr/bin/python3 -c 'import libtorrent' || { echo "missing python3-libtorrent" >&2; exit 1; }
# shellcheck source=lib.sh
source "$root/scripts/interop.d/lib.sh"   # netns_pair, in_ns_bg, netns_cleanup (on EXIT)
set +e
set -uo pipefail

A() { ip netns exec "$NS_A" "$@"; }
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

mkdir -p "$WORK/src/vault/in"
head -c 2500000 /dev/urandom > "$WORK/src/vault/in/a.bin"
head -c 654321 /dev/urandom > "$WORK/src/vault/b.bin"
same_tree() { diff -r "$WORK/src/vault" "$1/vault" >/dev/null && cmp -s "$WORK/src/vault/in/a.bin" "$1/vault/in/a.bin"; }

in_ns_bg "$NS_B" "$SERVENT" -v torrent tracker --listen "$ADDR_B:6969" --interval 5 > "$WORK/tracker.log" 2>&1
wait_tcp "$NS_B" "$ADDR_B" 6969 || { echo "our tracker did not start"; cat "$WORK/tracker.log"; exit 1; }

cat > "$WORK/lt.py" <<'PY'
import sys, time
import libtorrent as lt
mode, torrent, folder, iface, seconds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
s = lt.session({'listen_interfaces': iface, 'enable_dht': False, 'enable_lsd': False,
    'enable_upnp': False, 'enable_natpmp': False,
    'out_enc_policy': int(lt.enc_policy.forced), 'in_enc_policy': int(lt.enc_policy.forced),
    'allowed_enc_level': int(lt.enc_level.rc4)})
p = lt.add_torrent_params(); p.ti = lt.torrent_info(torrent); p.save_path = folder
h = s.add_torrent(p)
end = time.time() + seconds
said = False
while time.time() < end:
    time.sleep(0.1)
    st = h.status()
    if st.is_seeding:
        if mode == 'get': print('lt complete', flush=True); sys.exit(0)
        if not said: print('lt seeding', flush=True); said = True
if mode == 'get':
    st = h.status(); print('lt timed out at %.1f%%, %d peers' % (st.progress * 100, st.num_peers), flush=True)
    sys.exit(1)
PY
aria2_args=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --console-log-level=notice
  --summary-interval=0 --file-allocation=none --bt-tracker-interval=5 --disable-ipv6=true
  --bt-require-crypto=true --bt-min-crypto-level=arc4)

TR_N=0
tr_start() { # a fresh transmission-daemon on host A, encryption required
  TR_N=$((TR_N + 1)); local cfg="$WORK/tr$TR_N"; mkdir -p "$cfg/dl"
  in_ns_bg "$NS_A" transmission-daemon -f -g "$cfg" -p 9091 -P 51413 -T -O -Y --no-utp -M -er \
    -w "$cfg/dl" --no-incomplete-dir -i "$ADDR_A" -r 127.0.0.1 -a 127.0.0.1 -e "$cfg/log" --log-info > "$cfg/out" 2>&1
  OTHER=$!
  for _ in $(seq 100); do A transmission-remote 9091 -l >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}
tr_done() { A transmission-remote 9091 -t 1 -i 2>/dev/null | grep -q 'Percent Done: 100%'; }

for client in transmission aria2 libtorrent; do
  "$SERVENT" torrent create "$WORK/src/vault" -t "http://$ADDR_B:6969/announce" --piece-size 64K --comment "$client" \
    --torrent-file "$WORK/$client.torrent" >/dev/null
  t="$WORK/$client.torrent"

  # It seeds (encryption required), we get with --encryption require.
  case $client in
    transmission) tr_start || { fail "transmission-daemon starts"; continue; }
      A transmission-remote 9091 -a "$t" -w "$WORK/src" >/dev/null
      for _ in $(seq 100); do tr_done && break; sleep 0.1; done ;;
    aria2) in_ns_bg "$NS_A" aria2c -d "$WORK/src" --check-integrity=true --seed-ratio=0.0 --seed-time=2 \
        --listen-port=6881 "${aria2_args[@]}" "$t" > "$WORK/aria2-seed.log" 2>&1
      OTHER=$!; wait_tcp "$NS_A" "$ADDR_A" 6881 ;;
    libtorrent) in_ns_bg "$NS_A" /usr/bin/python3 "$WORK/lt.py" seed "$t" "$WORK/src" "$ADDR_A:6881" 100 > "$WORK/lt-seed.log" 2>&1
      OTHER=$!; for _ in $(seq 100); do grep -qs 'lt seeding' "$WORK/lt-seed.log" && break; sleep 0.1; done ;;
  esac
  sleep 1   # its first announce
  start=$EPOCHREALTIME
  if RUST_LOG=debug timeout 60 ip netns exec "$NS_B" "$SERVENT" -v torrent get "$t" -o "$WORK/got-$client" --listen "$ADDR_B:0" \
      --encryption require --no-dht > "$WORK/get-$client.log" 2>&1 && same_tree "$WORK/got-$client"; then
    pass "$client seeds with encryption required, servent gets with --encryption require ($(since "$start") s), files identical"
  else
    fail "$client seeds with encryption required, servent gets with --encryption require"; tail -5 "$WORK/get-$client.log"
  fi
  stop "$OTHER"

  # We seed with --encryption require, it downloads (encryption required).
  in_ns_bg "$NS_B" "$SERVENT" -v torrent seed "$t" "$WORK/src/vault" --listen "$ADDR_B:6881" \
    --encryption require --no-dht > "$WORK/seed-$client.log" 2>&1
  sd=$!
  wait_tcp "$NS_B" "$ADDR_B" 6881; sleep 1
  start=$EPOCHREALTIME; ok=0
  case $client in
    transmission) tr_start || { fail "transmission-daemon starts"; stop "$sd"; continue; }
      A transmission-remote 9091 -a "$t" -w "$WORK/other-got-$client" >/dev/null
      for _ in $(seq 600); do tr_done && { ok=1; break; }; sleep 0.1; done ;;
    aria2) timeout 60 ip netns exec "$NS_A" aria2c -d "$WORK/other-got-$client" --seed-time=0 --listen-port=6882 \
        "${aria2_args[@]}" "$t" > "$WORK/aria2-get.log" 2>&1 && ok=1; OTHER= ;;
    libtorrent) ip netns exec "$NS_A" /usr/bin/python3 "$WORK/lt.py" get "$t" "$WORK/other-got-$client" "$ADDR_A:6882" 60 \
        > "$WORK/lt-get.log" 2>&1 && ok=1; OTHER= ;;
  esac
  if [ $ok = 1 ] && same_tree "$WORK/other-got-$client"; then
    pass "servent seeds with --encryption require, $client downloads with encryption required ($(since "$start") s), files identical"
  else
    fail "servent seeds with --encryption require, $client downloads with encryption required"; tail -5 "$WORK/seed-$client.log"
  fi
  [ -n "$OTHER" ] && stop "$OTHER"
  stop "$sd"
done

echo "bittorrent-mse: $fails failed"
[ $fails = 0 ]
