#!/usr/bin/env bash
# Napster firewalled transfer (500 -> 501 -> push) through a real firewall, in two network
# namespaces (needs root, iproute2 and iptables).
#
#   host A (10.254.0.1): the index server and the downloader.
#   host B (10.254.0.2): the sharer; its namespace drops every inbound TCP SYN (iptables), so
#                        nobody can connect to it. It logs in to the server by connecting out,
#                        announcing data port 0 (firewalled), as a classic client behind a
#                        firewall did.
#
# A searches and gets B's file in the provider list; a direct connection to B is shown to be
# dropped; A's download goes through the alternate request (500), the server relays it to B
# as 501, B connects out to A's data port and sends `SEND`, nick, file and size, and streams
# the file. The check passes when the file A wrote is byte-identical to B's and was pushed.
#
# Standalone: `sudo scripts/interop.d/30-napster-push.sh`, or through `scripts/interop napster`
# (uses $SERVENT, default target/release/servent, and $WORK, default a fresh temporary
# folder). Exits 0 only when every check held; cleans up its namespaces and processes on
# every exit.
# needs: iproute2 iptables
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
SERVENT=${SERVENT:-$root/target/release/servent}
WORK=${WORK:-$(mktemp -d)}
[ "$(id -u)" = 0 ] || { echo "interop-napster-push: needs root" >&2; exit 1; }
[ -x "$SERVENT" ] || { echo "interop-napster-push: no servent binary at $SERVENT (cargo build --release)" >&2; exit 1; }
command -v ip >/dev/null || { echo "interop-napster-push: needs iproute2" >&2; exit 1; }
command -v iptables >/dev/null || { echo "interop-napster-push: needs iptables" >&2; exit 1; }

# shellcheck source=lib.sh
. "$here/lib.sh"

netns_pair
firewall_inbound_tcp "$NS_B"

mkdir -p "$WORK/share" "$WORK/downloads"
FILE="Pixies - Debaser.mp3"
head -c 3000000 /dev/urandom > "$WORK/share/$FILE"
SERVER="$ADDR_A:8888"

in_ns_bg "$NS_A" "$SERVENT" napster server --listen "$SERVER" --db "$WORK/napster.db" \
  --argon2-kib 1024 > "$WORK/server.log" 2>&1
wait_for ip netns exec "$NS_A" bash -c "exec 3<>/dev/tcp/$ADDR_A/8888" \
  || { echo "the server never listened"; cat "$WORK/server.log"; exit 1; }

in_ns_bg "$NS_B" "$SERVENT" napster share "$WORK/share" --node "$SERVER" --nick holder \
  --password holder-pw --firewalled > "$WORK/share.log" 2>&1

# The sharer is online once its file is in the index.
hits=""
for _ in $(seq 100); do
  hits=$(ip netns exec "$NS_A" "$SERVENT" napster search debaser --node "$SERVER" \
    --nick seeker --password seeker-pw 2>/dev/null || true)
  if printf '%s\n' "$hits" | grep -qF "holder	$FILE	3000000"; then break; fi
  hits=""
  sleep 0.1
done
[ -n "$hits" ] || { echo "the holder's file never appeared in search"; cat "$WORK/server.log" "$WORK/share.log"; exit 1; }
echo "provider list:"; echo "$hits"

# A direct connection to B must be dropped, not refused: the firewall works.
rc=0
ip netns exec "$NS_A" timeout 3 bash -c "exec 3<>/dev/tcp/$ADDR_B/6699" 2>/dev/null || rc=$?
[ "$rc" = 124 ] || { echo "a connection to the firewalled host was not dropped (exit $rc)"; exit 1; }

out=$(timeout 60 ip netns exec "$NS_A" "$SERVENT" napster get holder "$FILE" -o "$WORK/downloads" \
  --node "$SERVER" --nick seeker --password seeker-pw --data-listen "$ADDR_A:0")
echo "$out"
case "$out" in
  *"pushed by a firewalled holder"*) ;;
  *) echo "the download did not take the push path"; exit 1 ;;
esac
cmp "$WORK/share/$FILE" "$WORK/downloads/$FILE"
echo "napster push through a firewall: ok"
