#!/usr/bin/env bash
# autoscale.sh: a small autoscaler in front of xlb.
#
# Every INTERVAL seconds it reads a load figure (by default the service's
# active flows, from "xlbctl status -o json"), decides how many instances
# the service needs, starts or stops one instance through a hook, and tells
# xlb the new backend set with "xlbctl backend sync". xlb keeps the flows
# and health state of the backends that stay, health-checks the new one
# before it gets traffic, and refuses a bad set whole.
#
# Scaling down never breaks a connection that ends within DRAIN_TIMEOUT:
#   1. sync the set with the leaving instance at weight 0 (no new flows);
#   2. xlbctl backend drain --wait: wait until its active flows are 0;
#   3. sync the set without it;
#   4. only then stop the instance.
#
# Policy (hysteresis, so it does not flap):
#   - up by one when load > instances * TARGET for UP_SAMPLES samples in a row;
#   - down by one when load < (instances - 1) * TARGET * DOWN_PERCENT / 100
#     for DOWN_SAMPLES samples in a row (the instances left would still be
#     below DOWN_PERCENT of their target);
#   - never below MIN or above MAX. After a change the counts start again.
#
# The autoscaler owns the service's backend set: every sync lists exactly
# the instances it started (kept in STATE_DIR/instances, one address a line).
#
# Settings (environment):
#   SERVICE        the xlb service, VIP:PORT/PROTO (required)
#   INSTANCES      the instance hook (required): "$INSTANCES start" starts an
#                  instance and prints its address once it serves;
#                  "$INSTANCES stop ADDR" stops it. netns-instances.sh beside
#                  this script is one for a lab; wrap your cloud's CLI likewise.
#   MIN, MAX       instance bounds (default 1 and 4)
#   TARGET         load per instance aimed at (default 100 active flows)
#   DOWN_PERCENT   see the policy (default 70)
#   UP_SAMPLES     default 1
#   DOWN_SAMPLES   default 3
#   INTERVAL       seconds between samples (default 5)
#   DRAIN_TIMEOUT  how long to wait for a leaving instance's flows (default
#                  5m); after it the instance is removed anyway, and the
#                  flows still on it break
#   WEIGHT         weight of every instance (default 1)
#   LOAD_CMD       a command printing the load figure (a whole number) instead
#                  of the service's active flows, e.g. "cat /run/load"
#   STATE_DIR      where the instance list and the synced set are kept
#                  (default /var/lib/xlb-autoscale)
#   XLBCTL         the xlbctl to run (default xlbctl; XLB_API names xlbd's
#                  socket if it is not the default)
#
# Needs bash, xlbctl and jq. Stop it with SIGTERM or Ctrl-C: it finishes
# nothing half-way that xlb would see (each sync is all or nothing) and
# leaves the instances running; the next run takes them over.
set -euo pipefail

: "${SERVICE:?set SERVICE to the xlb service, VIP:PORT/PROTO}"
: "${INSTANCES:?set INSTANCES to the instance hook (see netns-instances.sh)}"
MIN=${MIN:-1}
MAX=${MAX:-4}
TARGET=${TARGET:-100}
DOWN_PERCENT=${DOWN_PERCENT:-70}
UP_SAMPLES=${UP_SAMPLES:-1}
DOWN_SAMPLES=${DOWN_SAMPLES:-3}
INTERVAL=${INTERVAL:-5}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-5m}
WEIGHT=${WEIGHT:-1}
LOAD_CMD=${LOAD_CMD:-}
STATE_DIR=${STATE_DIR:-/var/lib/xlb-autoscale}
XLBCTL=${XLBCTL:-xlbctl}

for v in MIN MAX TARGET DOWN_PERCENT UP_SAMPLES DOWN_SAMPLES WEIGHT; do
	[[ ${!v} =~ ^[0-9]+$ ]] || { echo "autoscale: $v=${!v}: want a whole number" >&2; exit 2; }
done
((MIN <= MAX && TARGET > 0)) || { echo "autoscale: want MIN <= MAX and TARGET > 0" >&2; exit 2; }

mkdir -p "$STATE_DIR"
list=$STATE_DIR/instances
touch "$list"

log() { echo "$(date -u +%FT%TZ) autoscale: $*"; }

count() { grep -c . "$list" || true; }

# load prints the load figure: LOAD_CMD's, or the sum of the service's
# backends' active flows.
load() {
	if [[ -n $LOAD_CMD ]]; then
		sh -c "$LOAD_CMD"
		return
	fi
	"$XLBCTL" status -o json |
		jq --arg s "$SERVICE" '[.services[] | select(.service == $s) | .backends[]?.active_flows] | add // 0'
}

# sync_set tells xlb the set: every instance at WEIGHT, the one named by $1 (if
# any) at weight 0, and shows what changed. On failure (xlbd unreachable,
# the set refused) nothing changed in xlb, and the next sample tries again.
sync_set() {
	local set=$STATE_DIR/set.txt empty=() out
	{
		echo "# written by autoscale.sh for $SERVICE"
		while read -r a; do
			[[ -n $a ]] || continue
			if [[ $a == "${1:-}" ]]; then echo "$a 0"; else echo "$a $WEIGHT"; fi
		done <"$list"
	} >"$set"
	(($(count) > 0)) || empty=(--allow-empty)
	if ! out=$("$XLBCTL" backend sync "$SERVICE" -f "$set" "${empty[@]}" 2>&1); then
		log "sync failed: $out"
		return 1
	fi
	# A set that changes nothing is not worth a line every sample.
	[[ $out == "no change to "* ]] || printf '  %s\n' "${out//$'\n'/$'\n'  }"
}

scale_up() {
	local addr
	if ! addr=$("$INSTANCES" start); then
		log "could not start an instance; trying again next sample"
		return 1
	fi
	echo "$addr" >>"$list"
	log "started $addr; adding it"
	sync_set
}

scale_down() {
	local victim
	victim=$(grep . "$list" | tail -n 1)
	log "scaling down: $victim gets no new flows"
	sync_set "$victim" || return 1
	if ! "$XLBCTL" backend drain "$SERVICE" "$victim" --wait --timeout "$DRAIN_TIMEOUT" 2>&1 | sed 's/^/  /'; then
		log "$victim still had flows after $DRAIN_TIMEOUT: removing it anyway"
	fi
	grep -vxF "$victim" "$list" >"$list.new" || true
	mv "$list.new" "$list"
	log "removing $victim"
	# Stopped only once xlb no longer lists it: if this sync fails, the
	# instance keeps serving at weight 0 and the next sync removes it.
	sync_set || { echo "$victim" >>"$STATE_DIR/to-stop"; return 1; }
	stop_instance "$victim"
}

stop_instance() {
	if "$INSTANCES" stop "$1"; then
		log "stopped $1"
	else
		log "could not stop $1 (no longer in xlb): stop it by hand"
	fi
}

# retry brings xlb back to the list after a failed sync, then stops the
# instances whose removal it held back.
retry() {
	sync_set || return 0
	if [[ -s $STATE_DIR/to-stop ]]; then
		while read -r a; do stop_instance "$a"; done <"$STATE_DIR/to-stop"
		rm -f "$STATE_DIR/to-stop"
	fi
}

trap 'log "stopping (instances left running: $(count))"; exit 0' TERM INT

log "service $SERVICE: $(count) instance(s) from $list, min $MIN, max $MAX, target $TARGET per instance"
while (($(count) < MIN)); do scale_up || sleep "$INTERVAL"; done
retry
up=0 down=0
while :; do
	# Every sample tells xlb the set again: a set that changes nothing
	# changes nothing (nothing written, no check restarted), and one that
	# differs puts back what a reload (SIGHUP) or a hand edit changed.
	retry
	n=$(count)
	if ! l=$(load) || ! [[ $l =~ ^[0-9]+$ ]]; then
		log "no load figure (${l:-none}); keeping $n instance(s)"
		sleep "$INTERVAL" &
		wait $!
		continue
	fi
	if ((n < MAX && l > n * TARGET)); then
		up=$((up + 1)) down=0
	elif ((n > MIN && l * 100 < (n - 1) * TARGET * DOWN_PERCENT)); then
		down=$((down + 1)) up=0
	else
		up=0 down=0
	fi
	log "load $l on $n instance(s) (up $up/$UP_SAMPLES, down $down/$DOWN_SAMPLES)"
	if ((up >= UP_SAMPLES)); then
		scale_up || true
		up=0
	elif ((down >= DOWN_SAMPLES)); then
		scale_down || true
		down=0
	fi
	sleep "$INTERVAL" &
	wait $!
done
