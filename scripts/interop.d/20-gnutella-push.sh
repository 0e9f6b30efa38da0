#!/usr/bin/env bash
# Gnutella 0.4 Push through a real firewall, in two network namespaces (needs root,
# iproute2 and iptables).
#
#   host A (10.254.0.1): the downloader, an ordinary servent.
#   host B (10.254.0.2): the holder; its namespace drops every inbound TCP SYN (iptables), so
#                        nobody can connect to it. It joins the overlay by connecting out to A.
#
# A searches, gets a QueryHit from B, finds B unreachable, sends a Push along the QueryHit's
# path; B connects out to A and sends GIV; A sends its GET on that connection. The check
# passes when the file A wrote is byte-identical to B's and a direct connection to B failed.
#
# Standalone: `sudo scripts/interop.d/20-gnutella-push.sh`, or through `scripts/interop gnutella` (uses $SERVENT, default
# target/release/servent, and $WORK, default a fresh temporary folder). Exits 0 only when
# every check held; cleans up its namespaces and processes on every exit.
# needs: iproute2 iptables
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
SERVENT=${SERVENT:-$root/target/release/servent}
WORK=${WORK:-$(mktemp -d)}
[ "$(id -u)" = 0 ] || { echo "interop-gnutella-push: needs root" >&2; exit 1; }
[ -x "$SERVENT" ] || { echo "interop-gnutella-push: no servent binary at $SERVENT (cargo build --release)" >&2; exit 1; }
command -v ip >/dev/null || { echo "interop-gnutella-push: needs iproute2" >&2; exit 1; }
command -v iptables >/dev/null || { echo "interop-gnutella-push: needs iptables" >&2; exit 1; }

NS_A="gna$$"; NS_B="gnb$$"; VETH_A="gva$$"; VETH_B="gvb$$"
ADDR_A=10.254.0.1; ADDR_B=10.254.0.2
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
# B is behind a firewall: inbound connection attempts are dropped, outbound ones work.
ip netns exec "$NS_B" iptables -A INPUT -p tcp --syn -j DROP

mkdir -p "$WORK/share" "$WORK/downloads"
head -c 3000000 /dev/urandom > "$WORK/share/Pixies - Debaser.mp3"

# Each namespace has its own loopback, so both control APIs can use the default address.
ip netns exec "$NS_A" "$SERVENT" gnutella run --listen "$ADDR_A:6346" > "$WORK/a.log" 2>&1 &
PIDS+=($!)
# B does not claim to be firewalled: A first tries a direct connection, which the firewall
# drops, and then falls back to Push.
ip netns exec "$NS_B" "$SERVENT" gnutella run --listen "$ADDR_B:6346" \
  --share "$WORK/share" --peer "$ADDR_A:6346" > "$WORK/b.log" 2>&1 &
PIDS+=($!)

joined=0
for _ in $(seq 100); do
  if [ -n "$(ip netns exec "$NS_A" "$SERVENT" gnutella peers 2>/dev/null)" ]; then joined=1; break; fi
  sleep 0.1
done
[ $joined = 1 ] || { echo "B never joined A"; cat "$WORK/a.log" "$WORK/b.log"; exit 1; }

# A direct connection to B must fail (the firewall works).
if ip netns exec "$NS_A" timeout 3 bash -c "exec 3<>/dev/tcp/$ADDR_B/6346" 2>/dev/null; then
  echo "connected to the firewalled holder directly: the firewall does not work"; exit 1
fi

hits=$(ip netns exec "$NS_A" "$SERVENT" gnutella search debaser --wait 2s)
echo "$hits"
id=$(echo "$hits" | awk -F'\t' '$2 == "Pixies - Debaser.mp3" { print $1; exit }')
[ -n "$id" ] || { echo "no hit for the holder's file"; exit 1; }

timeout 60 ip netns exec "$NS_A" "$SERVENT" gnutella get "$id" -o "$WORK/downloads"
cmp "$WORK/share/Pixies - Debaser.mp3" "$WORK/downloads/Pixies - Debaser.mp3"
echo "gnutella push through a firewall: ok"
