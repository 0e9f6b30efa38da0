# The foundation across two network namespaces: the example protocol over real UDP and TCP
# through a rate-limited veth link, then with inbound TCP firewalled.
# needs: iproute2 iptables
. "$(dirname "$0")/lib.sh"
netns_pair 10mbit
in_ns_bg "$NS_B" "$SERVENT" ping serve --listen "$ADDR_B:7000"
wait_for ip netns exec "$NS_A" "$SERVENT" ping send "$ADDR_B:7000" --count 1 --timeout 0.5

out=$(ip netns exec "$NS_A" "$SERVENT" ping send "$ADDR_B:7000" --count 3)
echo "$out"
echo "$out" | awk '/^pong/ { n++; if ($5 + 0 <= 0) bad++ } END { exit !(n == 3 && bad == 0) }'

out=$(ip netns exec "$NS_A" "$SERVENT" ping send "$ADDR_B:7000" --tcp --count 2)
echo "$out"
echo "$out" | awk '/^pong/ { n++ } END { exit !(n == 2) }'

firewall_inbound_tcp "$NS_B"
if ip netns exec "$NS_A" "$SERVENT" ping send "$ADDR_B:7000" --tcp --count 1 --timeout 1; then
  echo "TCP ping went through a firewall that drops inbound connections"; exit 1
fi
# datagrams still pass
ip netns exec "$NS_A" "$SERVENT" ping send "$ADDR_B:7000" --count 1
echo "netns ping: ok"
