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
# OURS_GOMAXPROCS (GOMAXPROCS for our relay only; default: the Go default),
# NICE (niceness of the server under test, turnutils_peer and
# turnutils_uclient alike; default -10 as root, to keep other work on a
# shared machine from deciding the loss figures; 0 turns it off),
# BASE_BIN (a turnbench binary built from an earlier commit: its runs,
# labelled "base", alternate with the others, for before/after figures in
# one session).
#
# Loss is put where it happened: the kernel's receive-queue drop counters
# (/proc/net/udp) of the server's, the peer's and the client's UDP sockets
# are sampled while the load runs and reported per process.
set -euo pipefail

CLIENTS=${CLIENTS:-50}
PACKETS=${PACKETS:-2000}
SIZE=${SIZE:-1000}
INTERVAL=${INTERVAL:-5}
RUNS=${RUNS:-3}
MODE=${MODE:-}
OURS_GOMAXPROCS=${OURS_GOMAXPROCS:-}
BASE_BIN=${BASE_BIN:-}
PORT_BASE=${PORT_BASE:-34811}
SECRET=bench-secret
REALM=bench.test
PORT_COTURN=${PORT_COTURN:-34781}
PORT_OURS=${PORT_OURS:-34791}
PORT_PEER=${PORT_PEER:-34801}
NICE=${NICE:-$([ "$(id -u)" -eq 0 ] && echo -10 || echo 0)}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
	# run_one runs in a subshell: the server it started is named in a file.
	[ -f "$work/server.pid" ] && pids+=("$(cat "$work/server.pid")")
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
# ctx_switches <pid>: voluntary + involuntary context switches of all its
# live threads (a steadier measure than CPU time on a busy machine).
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/ { s += $2 } END { print s + 0 }'; }

wait_udp_port() {
	for _ in $(seq 1 100); do
		if ss -Hlun "sport = :$1" | grep -q .; then return 0; fi
		sleep 0.1
	done
	echo "nothing listening on udp port $1" >&2
	return 1
}

nice -n "$NICE" turnutils_peer -L 127.0.0.1 -p "$PORT_PEER" >"$work/peer.log" 2>&1 &
peer_pid=$!
pids+=("$peer_pid")
wait_udp_port "$PORT_PEER"

start_server() { # $1 = coturn|ours|base; prints the pid
	case $1 in
	coturn)
		nice -n "$NICE" turnserver -n --listening-ip=127.0.0.1 --listening-port="$PORT_COTURN" \
			--relay-ip=127.0.0.1 --allow-loopback-peers \
			--use-auth-secret --static-auth-secret="$SECRET" --realm="$REALM" \
			--no-cli --no-tls --no-dtls --min-port=50000 --max-port=54999 \
			--log-file="$work/coturn.log" >/dev/null 2>&1 &
		echo $!
		;;
	ours)
		nice -n "$NICE" env ${OURS_GOMAXPROCS:+GOMAXPROCS=$OURS_GOMAXPROCS} "$work/turnbench" -listen "127.0.0.1:$PORT_OURS" -secret "$SECRET" -realm "$REALM" \
			-min-port 55000 -max-port 59999 >"$work/ours.log" 2>&1 &
		echo $!
		;;
	base)
		nice -n "$NICE" env ${OURS_GOMAXPROCS:+GOMAXPROCS=$OURS_GOMAXPROCS} "$BASE_BIN" -listen "127.0.0.1:$PORT_BASE" -secret "$SECRET" -realm "$REALM" \
			-min-port 60000 -max-port 64999 >"$work/base.log" 2>&1 &
		echo $!
		;;
	esac
}

# udp_drops <pid>...: "inode drops" for every UDP socket the processes hold.
# A process that exits meanwhile simply has no sockets.
udp_drops() {
	local p
	for p in "$@"; do
		{ ls -l "/proc/$p/fd" 2>/dev/null || true; } | sed -n 's/.*socket:\[\([0-9]*\)\].*/\1/p'
	done | awk 'NR == FNR { want[$1] = 1; next } FNR > 1 && ($10 in want) { print $10, $13 }' - /proc/net/udp || true
}

# run_one <server> -> "cpu_s relayed sent recv lost rtt_ms drops_server drops_peer drops_client"
run_one() {
	local name=$1 port pid before after out upid csw_before csw_after
	port=$PORT_COTURN
	[ "$name" = ours ] && port=$PORT_OURS
	[ "$name" = base ] && port=$PORT_BASE
	pid=$(start_server "$name")
	echo "$pid" >"$work/server.pid"
	wait_udp_port "$port"
	before=$(cpu_ticks "$pid")
	csw_before=$(ctx_switches "$pid")
	# shellcheck disable=SC2086 # MODE is a flag or empty
	nice -n "$NICE" turnutils_uclient $MODE -W "$SECRET" -u bench -e 127.0.0.1 -r "$PORT_PEER" \
		-m "$CLIENTS" -n "$PACKETS" -l "$SIZE" -z "$INTERVAL" -c -p "$port" 127.0.0.1 >"$work/uclient-$name.log" 2>&1 &
	upid=$!
	: >"$work/drops"
	while kill -0 "$upid" 2>/dev/null; do
		{ udp_drops "$pid" | sed 's/^/server /'; udp_drops "$peer_pid" | sed 's/^/peer /'; udp_drops "$upid" | sed 's/^/client /'; } >>"$work/drops"
		sleep 0.2
	done
	wait "$upid" || true
	after=$(cpu_ticks "$pid")
	csw_after=$(ctx_switches "$pid")
	udp_drops "$pid" | sed 's/^/server /' >>"$work/drops"
	udp_drops "$peer_pid" | sed 's/^/peer /' >>"$work/drops"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	rm -f "$work/server.pid"
	out=$(cat "$work/uclient-$name.log")
	# Highest count seen per socket, summed per process; the peer's socket
	# lives across runs, so its count before this run is subtracted.
	local drops
	drops=$(awk -v base="$(cat "$work/peer_base" 2>/dev/null || echo 0)" '{ k = $1 " " $2; if ($3 > m[k]) m[k] = $3 }
		END { for (k in m) { split(k, a, " "); d[a[1]] += m[k] } printf "%d %d %d\n", d["server"], d["peer"] - base, d["client"] }' "$work/drops")
	awk '$1 == "peer" && $3 > m { m = $3 } END { print m + 0 }' "$work/drops" >"$work/peer_base"
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
	awk -v t="$((after - before))" -v hz="$ticks_per_s" -v s="$sent" -v r="$recv" -v l="$lost" -v rtt="$rtt" -v d="$drops" -v csw="$((csw_after - csw_before))" \
		'BEGIN { printf "%.2f %d %d %d %d %s %s %d\n", t / hz, s + r, s, r, l, rtt, d, csw }'
}

echo "load: $CLIENTS clients x $PACKETS packets of $SIZE bytes every $INTERVAL ms, mode '${MODE:-channel}', $RUNS run(s) each, $(nproc) cores, GOMAXPROCS ${OURS_GOMAXPROCS:-default}, nice $NICE"
echo "machine load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-7s %4s %7s %9s %8s %8s %7s %9s %10s %22s %10s\n" server run cpu_s relayed sent recv lost rtt_ms cpu/100k "kernel drops srv/peer/cli" ctxsw/pkt
: >"$work/results"
servers="coturn ours"
[ -n "$BASE_BIN" ] && servers="coturn base ours"
for run in $(seq 1 "$RUNS"); do
	for name in $servers; do
		read -r cpu relayed sent recv lost rtt dsrv dpeer dcli csw < <(run_one "$name")
		per=$(awk -v c="$cpu" -v p="$relayed" 'BEGIN { printf "%.3f", p ? c / (p / 100000) : 0 }')
		cswp=$(awk -v c="$csw" -v p="$relayed" 'BEGIN { printf "%.3f", p ? c / p : 0 }')
		printf "%-7s %4d %7s %9d %8d %8d %7d %9.3f %10s %22s %10s\n" "$name" "$run" "$cpu" "$relayed" "$sent" "$recv" "$lost" "$rtt" "$per" "$dsrv/$dpeer/$dcli" "$cswp"
		echo "$name $per $lost $rtt" >>"$work/results"
	done
done
echo
# median <server> <column>: column 2 = cpu per 100k, 3 = lost, 4 = rtt
median() {
	awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$work/results" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
for name in $servers; do
	echo "$name median of $RUNS: $(median "$name" 2) cpu_s per 100k relayed packets, lost $(median "$name" 3), mean rtt $(median "$name" 4) ms"
done
echo "machine load after: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v o="$(median ours 2)" -v c="$(median coturn 2)" 'BEGIN { printf "ratio ours/coturn (median cpu per relayed packet): %.2f\n", o / c }'
if [ -n "$BASE_BIN" ]; then
	awk -v o="$(median base 2)" -v c="$(median coturn 2)" 'BEGIN { printf "ratio base/coturn (median cpu per relayed packet): %.2f\n", o / c }'
fi
