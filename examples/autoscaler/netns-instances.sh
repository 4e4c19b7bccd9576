#!/usr/bin/env bash
# netns-instances.sh: autoscale.sh's instance hook for a lab, where an
# instance is a web server in a network namespace (as "ip netns" makes them).
#
#   netns-instances.sh start       start one in the first idle namespace of
#                                  POOL; print its address once it answers
#   netns-instances.sh stop ADDR   stop the one at ADDR (SIGTERM, then wait)
#
# Settings (environment):
#   POOL      the namespaces and the address each instance is reached at,
#             space-separated NETNS=ADDR pairs (required)
#   WEB_CMD   the web server, run with sh -c inside the namespace with
#             INSTANCE_NAME (the namespace) and INSTANCE_ADDR set (required),
#             e.g. 'python3 -m http.server 8080'
#   PORT      the port it serves on, checked before start returns (default 8080)
#   HEALTH    the path checked (default /)
#   RUN_DIR   pid and log files (default /run/xlb-autoscale)
#
# Backends of a DSR service also hold the VIP on lo (see the README); the
# lab's namespaces already do.
set -euo pipefail

: "${POOL:?set POOL to NETNS=ADDR pairs}"
PORT=${PORT:-8080}
HEALTH=${HEALTH:-/}
RUN_DIR=${RUN_DIR:-/run/xlb-autoscale}
mkdir -p "$RUN_DIR"

running() { [[ -f $RUN_DIR/$1.pid ]] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }

start() {
	: "${WEB_CMD:?set WEB_CMD to the web server command}"
	local pair ns addr pid i
	for pair in $POOL; do
		ns=${pair%%=*} addr=${pair#*=}
		running "$ns" && continue
		INSTANCE_NAME=$ns INSTANCE_ADDR=$addr \
			nsenter --net="/var/run/netns/$ns" sh -c "exec $WEB_CMD" \
			</dev/null >>"$RUN_DIR/$ns.log" 2>&1 &
		pid=$!
		echo "$pid" >"$RUN_DIR/$ns.pid"
		for ((i = 0; i < 100; i++)); do
			if nsenter --net="/var/run/netns/$ns" curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$PORT$HEALTH"; then
				echo "$addr"
				return 0
			fi
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		echo "netns-instances: the web server in $ns did not answer (see $RUN_DIR/$ns.log)" >&2
		kill "$pid" 2>/dev/null || true
		rm -f "$RUN_DIR/$ns.pid"
		return 1
	done
	echo "netns-instances: every namespace of POOL runs an instance" >&2
	return 1
}

stop() {
	local pair ns pid i
	for pair in $POOL; do
		ns=${pair%%=*}
		[[ ${pair#*=} == "$1" ]] || continue
		running "$ns" || { rm -f "$RUN_DIR/$ns.pid"; return 0; }
		pid=$(cat "$RUN_DIR/$ns.pid")
		kill -TERM "$pid"
		for ((i = 0; i < 200; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		rm -f "$RUN_DIR/$ns.pid"
		return 0
	done
	echo "netns-instances: no namespace in POOL has address $1" >&2
	return 1
}

case ${1:-} in
start) start ;;
stop) stop "${2:?usage: netns-instances.sh stop ADDR}" ;;
*)
	echo "usage: netns-instances.sh start | stop ADDR" >&2
	exit 2
	;;
esac
