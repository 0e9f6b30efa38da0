#!/usr/bin/env bash
# Gnutella 0.6 across two network namespaces (needs root, iproute2 and iptables): an
# ultrapeer, a searching leaf, and a leaf behind a real firewall that holds the file.
#
#   host A (10.254.4.1): the ultrapeer (port 6346) and the searching leaf (port 6347).
#   host B (10.254.4.2): the holder, a leaf; its namespace drops every inbound TCP SYN, so
#                        nobody can connect to it. It joins by connecting out to the ultrapeer.
#
# Checks: the ultrapeer lists the holder as a leaf whose QRP table arrived, over a deflated
# 0.6 link; a direct connection to B fails; the searching leaf finds the file (the query
# reaches B only through its QRP table); the download goes through a Push that the
# ultrapeer routes to B by servent id, and the file is byte-identical.
#
# Standalone: `sudo scripts/interop.d/21-gnutella-ultrapeer.sh`, or through
# `scripts/interop gnutella` (uses $SERVENT, default target/release/servent, and $WORK,
# default a fresh temporary folder). Exits 0 only when every check held; cleans up its
# namespaces and processes on every exit.
# needs: iproute2 iptables
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
SERVENT=${SERVENT:-$root/target/release/servent}
WORK=${WORK:-$(mktemp -d)}
[ "$(id -u)" = 0 ] || { echo "interop-gnutella-ultrapeer: needs root" >&2; exit 1; }
[ -x "$SERVENT" ] || { echo "interop-gnutella-ultrapeer: no servent binary at $SERVENT (cargo build --release)" >&2; exit 1; }
command -v ip >/dev/null || { echo "interop-gnutella-ultrapeer: needs iproute2" >&2; exit 1; }
command -v iptables >/dev/null || { echo "interop-gnutella-ultrapeer: needs iptables" >&2; exit 1; }

NS_A="gua$$"; NS_B="gub$$"; VETH_A="gwa$$"; VETH_B="gwb$$"
ADDR_A=10.254.4.1; ADDR_B=10.254.4.2
CTL_UP=127.0.0.1:6450; CTL_SEEK=127.0.0.1:6451; CTL_HOLD=127.0.0.1:6452
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  ip netns del "$NS_A" 2>/dev/null || true
  ip netns del "$NS_B" 2>/dev/null || true
}
trap cleanup EXIT

ip netns add "$NS_A"; ip netns add "$NS_B"
ip link add "$VETH_A" type veth peer name "$VETH_B"
ip link set "$VETH_A" netns "$NS_A"; ip link set "$VETH_B" netns "$NS_B"
ip -n "$NS_A" addr add "$ADDR_A/30" dev "$VETH_A"; ip -n "$NS_B" addr add "$ADDR_B/30" dev "$VETH_B"
for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
ip -n "$NS_A" link set "$VETH_A" up; ip -n "$NS_B" link set "$VETH_B" up
# Inbound SYNs from the network are dropped (its own loopback, for the control API, is not).
ip netns exec "$NS_B" iptables -A INPUT -i "$VETH_B" -p tcp --syn -j DROP

mkdir -p "$WORK/share" "$WORK/empty" "$WORK/downloads"
head -c 2000000 /dev/urandom > "$WORK/share/Pixies - Debaser.mp3"

ip netns exec "$NS_A" "$SERVENT" gnutella run --role ultrapeer --listen "$ADDR_A:6346" \
  --control "$CTL_UP" > "$WORK/up.log" 2>&1 &
PIDS+=($!)
echo "$ADDR_A:6346" > "$WORK/bootstrap.txt"
ip netns exec "$NS_B" "$SERVENT" gnutella run --role leaf --listen "$ADDR_B:6346" \
  --control "$CTL_HOLD" --share "$WORK/share" --bootstrap "$WORK/bootstrap.txt" > "$WORK/holder.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS_A" "$SERVENT" gnutella run --role leaf --listen "$ADDR_A:6347" \
  --control "$CTL_SEEK" --share "$WORK/empty" --peer "$ADDR_A:6346" > "$WORK/seeker.log" 2>&1 &
PIDS+=($!)

# The ultrapeer lists both leaves, the holder's QRP table in.
peers=""
for _ in $(seq 100); do
  peers=$(ip netns exec "$NS_A" "$SERVENT" gnutella peers --node "$CTL_UP" 2>/dev/null || true)
  if echo "$peers" | grep -q "^$ADDR_B:[0-9]*	leaf	qrp [0-9.]*%$" \
     && [ "$(echo "$peers" | grep -c '	leaf	')" = 2 ]; then break; fi
  sleep 0.1
done
echo "$peers"
echo "$peers" | grep -q "^$ADDR_B:[0-9]*	leaf	qrp [0-9.]*%$" || { echo "the holder is not a leaf with a QRP table"; cat "$WORK"/*.log; exit 1; }
hp=$(ip netns exec "$NS_B" "$SERVENT" gnutella peers --node "$CTL_HOLD")
echo "$hp" | grep -q "^$ADDR_A:6346	ultrapeer	" || { echo "the holder does not see an ultrapeer: $hp"; exit 1; }

if ip netns exec "$NS_A" timeout 3 bash -c "exec 3<>/dev/tcp/$ADDR_B/6346" 2>/dev/null; then
  echo "connected to the firewalled holder directly: the firewall does not work"; exit 1
fi

hits=$(ip netns exec "$NS_A" "$SERVENT" gnutella search debaser --wait 2s --node "$CTL_SEEK")
echo "$hits"
id=$(echo "$hits" | awk -F'\t' '$2 == "Pixies - Debaser.mp3" { print $1; exit }')
[ -n "$id" ] || { echo "no hit for the holder's file"; exit 1; }
# A word no leaf shares reaches no leaf: the searching leaf gets nothing.
if ip netns exec "$NS_A" "$SERVENT" gnutella search nirvana --wait 1s --node "$CTL_SEEK"; then
  echo "a hit for a word nobody shares"; exit 1
fi
seen=$(ip netns exec "$NS_B" "$SERVENT" gnutella stats --json --node "$CTL_HOLD" | grep -o '"queries_seen": *[0-9]*' | grep -o '[0-9]*$')
[ "$seen" = 1 ] || { echo "the holder saw $seen queries, expected 1 (QRP)"; exit 1; }

timeout 60 ip netns exec "$NS_A" "$SERVENT" gnutella get "$id" -o "$WORK/downloads" --node "$CTL_SEEK"
cmp "$WORK/share/Pixies - Debaser.mp3" "$WORK/downloads/Pixies - Debaser.mp3"
echo "gnutella 0.6 ultrapeer, QRP and Push to a firewalled leaf: ok"
