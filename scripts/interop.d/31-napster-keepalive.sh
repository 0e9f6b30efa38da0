#!/usr/bin/env bash
# Napster: a logged-in client that vanishes without closing its connection (crash of its host,
# cut cable, NAT entry gone) is logged out, and its files leave the index; a quiet client that
# is still there stays (issue 16: idle logged-in connections were never closed).
#
#   host A (10.254.0.1): the index server (`--keepalive 2s`) and a quiet sharer on the same host.
#   host B (10.254.0.2): a sharer; once its file is in the index, its namespace drops every
#                        packet in and out (iptables), so no FIN or RST ever reaches the server.
#
# Checks (the server allows many logins a second: every check is a fresh search login):
# B's file leaves the search results within 20 s (keepalive 2 s + 3 probes of 1 s, plus
# slack for a loaded machine), while the quiet sharer on A, silent all that time, is still found
# after B is gone. Before the fix, B's file stayed in the index for ever.
#
# Standalone: `sudo scripts/interop.d/31-napster-keepalive.sh`, or through `scripts/interop napster`.
# needs: iproute2 iptables
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
SERVENT=${SERVENT:-$root/target/release/servent}
WORK=${WORK:-$(mktemp -d)}
[ "$(id -u)" = 0 ] || { echo "interop-napster-keepalive: needs root" >&2; exit 1; }
[ -x "$SERVENT" ] || { echo "interop-napster-keepalive: no servent binary at $SERVENT (cargo build --release)" >&2; exit 1; }
command -v iptables >/dev/null || { echo "interop-napster-keepalive: needs iptables" >&2; exit 1; }

# shellcheck source=lib.sh
. "$here/lib.sh"

netns_pair

mkdir -p "$WORK/share-b" "$WORK/share-a"
head -c 100000 /dev/urandom > "$WORK/share-b/vanishing host.mp3"
head -c 100000 /dev/urandom > "$WORK/share-a/quiet host.mp3"
SERVER="$ADDR_A:8888"

in_ns_bg "$NS_A" "$SERVENT" napster server --listen "$SERVER" --db "$WORK/napster.db" \
  --argon2-kib 1024 --keepalive 2s --login-rate 1000 > "$WORK/server.log" 2>&1
wait_for ip netns exec "$NS_A" bash -c "exec 3<>/dev/tcp/$ADDR_A/8888" \
  || { echo "the server never listened"; cat "$WORK/server.log"; exit 1; }

in_ns_bg "$NS_B" "$SERVENT" napster share "$WORK/share-b" --node "$SERVER" --nick vanisher \
  --password vanisher-pw --firewalled > "$WORK/share-b.log" 2>&1
vanisher=${PIDS[-1]}
in_ns_bg "$NS_A" "$SERVENT" napster share "$WORK/share-a" --node "$SERVER" --nick quiet \
  --password quiet-pw --firewalled > "$WORK/share-a.log" 2>&1

search() { # WORD: the search results, one line a file
  ip netns exec "$NS_A" "$SERVENT" napster search "$1" --node "$SERVER" \
    --nick seeker --password seeker-pw 2>>"$WORK/search.err" || true
}
found() { search "$1" | grep -qF "$2	"; }

for nick_word in "vanisher vanishing" "quiet quiet"; do
  set -- $nick_word
  ok=""
  for _ in $(seq 100); do
    if found "$2" "$1"; then ok=1; break; fi
    sleep 0.1
  done
  [ -n "$ok" ] || { echo "$1's file never appeared in search"; cat "$WORK/server.log" "$WORK/share-a.log" "$WORK/share-b.log"; exit 1; }
done
echo "both sharers are in the index"

# Host B vanishes: nothing in, nothing out, no FIN, no RST.
ip netns exec "$NS_B" iptables -A INPUT -j DROP
ip netns exec "$NS_B" iptables -A OUTPUT -j DROP
t0=$(date +%s.%N)
gone=""
for _ in $(seq 80); do
  if ! found vanishing vanisher; then gone=1; break; fi
  sleep 0.25
done
t1=$(date +%s.%N)
[ -n "$gone" ] || { echo "the vanished host's file was still in the index after 20 s"; cat "$WORK/server.log" "$WORK/search.err"; exit 1; }
# gone from the results because the search itself failed would prove nothing
found quiet quiet || { echo "searches fail: $(tail -3 "$WORK/search.err")"; exit 1; }
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "the vanished host left the index after %.1f s\n", b - a }'

# The quiet sharer on A has sent nothing since its share list, for longer than the keepalive
# time and its probes: it answered the probes and is still logged in.
found quiet quiet || { echo "the quiet live sharer was logged out"; cat "$WORK/server.log" "$WORK/search.err"; exit 1; }
echo "the quiet live sharer is still in the index"

# The cut-off sharer still stops at once on SIGTERM (a service manager's stop), although its
# goodbye can never reach the server.
kill -TERM "$vanisher"
for _ in $(seq 100); do kill -0 "$vanisher" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$vanisher" 2>/dev/null; then
  echo "the cut-off sharer ignored SIGTERM for 10 s"; kill -9 "$vanisher"; exit 1
fi
echo "the cut-off sharer stopped on SIGTERM"
echo "napster keepalive: ok"
