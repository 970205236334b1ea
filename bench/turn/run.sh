#!/usr/bin/env bash
# Benchmark: Switchboard's turn package against coturn, on loopback, under
# the same turnutils_uclient load. Reports, for each server, the CPU seconds
# it spent per 100,000 relayed packets (utime+stime from /proc/<pid>/stat,
# sampled right before and right after the load), the loss and the mean
# round trip uclient measured, and the ratio ours/coturn.
#
# Needs: go, and Debian's coturn package (turnserver, turnutils_uclient,
# turnutils_peer).  Knobs (environment): CLIENTS, PACKETS, SIZE (bytes),
# INTERVAL (ms), RUNS (alternating runs per server), MODE ("" for
# ChannelData, "-s" for Send indications, "-t" for TCP to the server),
# OURS_GOMAXPROCS (GOMAXPROCS for our relay only; default: the Go default).
set -euo pipefail

CLIENTS=${CLIENTS:-50}
PACKETS=${PACKETS:-2000}
SIZE=${SIZE:-1000}
INTERVAL=${INTERVAL:-5}
RUNS=${RUNS:-3}
MODE=${MODE:-}
OURS_GOMAXPROCS=${OURS_GOMAXPROCS:-}
SECRET=bench-secret
REALM=bench.test
PORT_COTURN=${PORT_COTURN:-34781}
PORT_OURS=${PORT_OURS:-34791}
PORT_PEER=${PORT_PEER:-34801}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

for tool in turnserver turnutils_uclient turnutils_peer; do
	command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y coturn" >&2; exit 1; }
done
(cd "$root" && go build -o "$work/turnbench" ./bench/turn)

ticks_per_s=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

wait_udp_port() {
	for _ in $(seq 1 100); do
		if ss -Hlun "sport = :$1" | grep -q .; then return 0; fi
		sleep 0.1
	done
	echo "nothing listening on udp port $1" >&2
	return 1
}

turnutils_peer -L 127.0.0.1 -p "$PORT_PEER" >"$work/peer.log" 2>&1 &
pids+=($!)
wait_udp_port "$PORT_PEER"

start_server() { # $1 = coturn|ours; prints the pid
	case $1 in
	coturn)
		turnserver -n --listening-ip=127.0.0.1 --listening-port="$PORT_COTURN" \
			--relay-ip=127.0.0.1 --allow-loopback-peers \
			--use-auth-secret --static-auth-secret="$SECRET" --realm="$REALM" \
			--no-cli --no-tls --no-dtls --min-port=50000 --max-port=54999 \
			--log-file="$work/coturn.log" >/dev/null 2>&1 &
		echo $!
		;;
	ours)
		env ${OURS_GOMAXPROCS:+GOMAXPROCS=$OURS_GOMAXPROCS} "$work/turnbench" -listen "127.0.0.1:$PORT_OURS" -secret "$SECRET" -realm "$REALM" \
			-min-port 55000 -max-port 59999 >"$work/ours.log" 2>&1 &
		echo $!
		;;
	esac
}

# run_one <server> -> "cpu_s relayed sent recv lost rtt_ms"
run_one() {
	local name=$1 port pid before after out
	port=$PORT_COTURN
	[ "$name" = ours ] && port=$PORT_OURS
	pid=$(start_server "$name")
	pids+=("$pid")
	wait_udp_port "$port"
	before=$(cpu_ticks "$pid")
	# shellcheck disable=SC2086 # MODE is a flag or empty
	out=$(turnutils_uclient $MODE -W "$SECRET" -u bench -e 127.0.0.1 -r "$PORT_PEER" \
		-m "$CLIENTS" -n "$PACKETS" -l "$SIZE" -z "$INTERVAL" -c -p "$port" 127.0.0.1 2>&1)
	after=$(cpu_ticks "$pid")
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	echo "$out" >"$work/uclient-$name.log"
	local sent recv lost rtt
	sent=$(echo "$out" | sed -n 's/.*start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=.*/\1/p' | tail -1)
	recv=$(echo "$out" | sed -n 's/.*start_mclient: tot_send_msgs=[0-9]*, tot_recv_msgs=\([0-9]*\).*/\1/p' | tail -1)
	lost=$(echo "$out" | sed -n 's/.*Total lost packets \([0-9]*\) .*/\1/p' | tail -1)
	rtt=$(echo "$out" | sed -n 's/.*Average round trip delay \([0-9.]*\) ms.*/\1/p' | tail -1)
	if [ -z "$sent" ] || [ -z "$recv" ]; then
		echo "uclient against $name produced no totals:" >&2
		echo "$out" | tail -20 >&2
		exit 1
	fi
	awk -v t="$((after - before))" -v hz="$ticks_per_s" -v s="$sent" -v r="$recv" -v l="$lost" -v rtt="$rtt" \
		'BEGIN { printf "%.2f %d %d %d %d %s\n", t / hz, s + r, s, r, l, rtt }'
}

echo "load: $CLIENTS clients x $PACKETS packets of $SIZE bytes every $INTERVAL ms, mode '${MODE:-channel}', $RUNS run(s) each, $(nproc) cores, GOMAXPROCS ${OURS_GOMAXPROCS:-default}"
echo "machine load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-7s %4s %8s %9s %8s %8s %7s %9s %14s\n" server run cpu_s relayed sent recv lost rtt_ms cpu_s/100k_pkts
declare -A cpu_sum=() pkt_sum=() lost_sum=() rtt_sum=()
for name in coturn ours; do cpu_sum[$name]=0; pkt_sum[$name]=0; lost_sum[$name]=0; rtt_sum[$name]=0; done
for run in $(seq 1 "$RUNS"); do
	for name in coturn ours; do
		read -r cpu relayed sent recv lost rtt < <(run_one "$name")
		per=$(awk -v c="$cpu" -v p="$relayed" 'BEGIN { printf "%.3f", p ? c / (p / 100000) : 0 }')
		printf "%-7s %4d %8s %9d %8d %8d %7d %9s %14s\n" "$name" "$run" "$cpu" "$relayed" "$sent" "$recv" "$lost" "$rtt" "$per"
		cpu_sum[$name]=$(awk -v a="${cpu_sum[$name]}" -v b="$cpu" 'BEGIN { print a + b }')
		pkt_sum[$name]=$((pkt_sum[$name] + relayed))
		lost_sum[$name]=$((lost_sum[$name] + lost))
		rtt_sum[$name]=$(awk -v a="${rtt_sum[$name]}" -v b="$rtt" 'BEGIN { print a + b }')
	done
done
echo
for name in coturn ours; do
	awk -v n="$name" -v c="${cpu_sum[$name]}" -v p="${pkt_sum[$name]}" -v l="${lost_sum[$name]}" -v r="${rtt_sum[$name]}" -v k="$RUNS" \
		'BEGIN { printf "%-7s total: %.2f cpu_s for %d relayed packets = %.3f cpu_s per 100k; lost %d; mean rtt %.3f ms\n", n, c, p, c / (p / 100000), l, r / k }'
done
echo "machine load after: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v co="${cpu_sum[coturn]}" -v cp="${pkt_sum[coturn]}" -v oo="${cpu_sum[ours]}" -v op="${pkt_sum[ours]}" \
	'BEGIN { printf "ratio ours/coturn (cpu per relayed packet): %.2f\n", (oo / op) / (co / cp) }'
