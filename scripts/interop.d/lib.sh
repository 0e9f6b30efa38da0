# Helpers for interop suites (sourced, not run). Namespaces are named with this suite's PID so
# parallel runs never collide; `netns_cleanup` removes what `netns_pair` made.
set -euo pipefail

NS_A="sva$$"; NS_B="svb$$"; VETH_A="va$$"; VETH_B="vb$$"
# The two test hosts' addresses exist only inside the namespaces this suite creates.
ADDR_A=10.254.0.1; ADDR_B=10.254.0.2
PIDS=()

netns_pair() { # [rate]: two hosts joined by a veth pair, optionally each side's egress limited
  # to a tc rate (e.g. 20mbit) with a token bucket. (This kernel has no netem: delay and loss
  # cannot be emulated here; the simulator models them.)
  ip netns add "$NS_A"; ip netns add "$NS_B"
  ip link add "$VETH_A" type veth peer name "$VETH_B"
  ip link set "$VETH_A" netns "$NS_A"; ip link set "$VETH_B" netns "$NS_B"
  ip -n "$NS_A" addr add "$ADDR_A/30" dev "$VETH_A"; ip -n "$NS_B" addr add "$ADDR_B/30" dev "$VETH_B"
  for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
  ip -n "$NS_A" link set "$VETH_A" up; ip -n "$NS_B" link set "$VETH_B" up
  if [ -n "${1:-}" ]; then
    ip netns exec "$NS_A" tc qdisc add dev "$VETH_A" root tbf rate "$1" burst 64kb latency 200ms
    ip netns exec "$NS_B" tc qdisc add dev "$VETH_B" root tbf rate "$1" burst 64kb latency 200ms
  fi
}

# in_ns NS CMD...: run in the background inside NS, remember its PID
in_ns_bg() { local ns=$1; shift; ip netns exec "$ns" "$@" & PIDS+=($!); }

# drop inbound TCP connection attempts to a host (a firewalled servent)
firewall_inbound_tcp() { ip netns exec "$1" iptables -A INPUT -p tcp --syn -j DROP; }

# wait_for CMD...: retry for up to 10 s
wait_for() { for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

netns_cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  ip netns del "$NS_A" 2>/dev/null || true; ip netns del "$NS_B" 2>/dev/null || true
}
trap netns_cleanup EXIT

# The coin suites (no namespaces: everything on 127.0.0.1).
# need_bitcoinlib: python-bitcoinlib (PyPI) for /usr/bin/python3, installed when missing.
need_bitcoinlib() {
  python3 -c 'import bitcoin' 2>/dev/null \
    || python3 -m pip install --quiet python-bitcoinlib 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages python-bitcoinlib
  python3 -c 'import bitcoin' || { echo "FAIL: python-bitcoinlib not installable"; exit 1; }
}

# coin_regtest_node P2P_PORT RPC_PORT DIR LOG: our regtest node on 127.0.0.1 in the background
# (its PID in PIDS, so netns_cleanup stops it); returns once it serves RPC (10 s at most).
coin_regtest_node() {
  "$SERVENT" coin node --network regtest --listen "127.0.0.1:$1" --data "$3" \
    --rpc "127.0.0.1:$2" > "$4" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do grep -q '^rpc ' "$4" && break; sleep 0.1; done
  grep -q '^rpc ' "$4" || { echo "FAIL: node did not start"; cat "$4"; exit 1; }
}
