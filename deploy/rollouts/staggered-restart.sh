#!/bin/sh
# staggered-restart.sh: restart the Valkey servers of a fleet one host at a
# time, moving each host's clients to the others only as fast as they can
# take them.
#
# Usage: staggered-restart.sh HOST...
#
# For each HOST in turn:
#   1. wait until every host has headroom (stormwatch headroom --wait);
#   2. on HOST, close its Valkey clients in batches; before each batch,
#      stormwatch drain asks the other hosts (where the clients reconnect)
#      for their headroom and waits while any has less than MIN_HEADROOM,
#      shrinking the next batch when their queues rose (--pace-by);
#   3. restart Valkey on HOST;
#   4. wait until every host, HOST included, has headroom again.
# The first step that fails stops the script: the hosts after it are left
# untouched, and it exits with that step's exit code (1: timed out or
# stopped early, 3: could not run).
#
# Each host runs stormwatch (the daemon, on STORMWATCH_PORT) and has the
# stormwatch binary; this script runs stormwatch headroom locally and
# stormwatch drain on each host over SSH.
#
# Environment (default):
#   VALKEY_PORT      the service's port (6379)
#   STORMWATCH_PORT  stormwatch's port on every host (9955)
#   MIN_HEADROOM     least headroom to go on (0.3)
#   METHOD           drain method: valkey (CLIENT KILL, a clean close) or
#                    destroy (SOCK_DESTROY, an RST; any TCP server) (valkey)
#   BATCH, EVERY     the drain's pace when nothing holds it back (5%, 2s)
#   WAIT_TIMEOUT     longest wait for headroom, and for one drain (10m)
#   RESTART          the command restarting Valkey on a host
#                    (systemctl restart valkey-server)
#   SSH              how to run a command on a host (ssh)
#   DRY_RUN          1: drain --dry-run and no restart (unset)
set -eu

VALKEY_PORT=${VALKEY_PORT:-6379}
STORMWATCH_PORT=${STORMWATCH_PORT:-9955}
MIN_HEADROOM=${MIN_HEADROOM:-0.3}
METHOD=${METHOD:-valkey}
BATCH=${BATCH:-5%}
EVERY=${EVERY:-2s}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-10m}
RESTART=${RESTART:-systemctl restart valkey-server}
SSH=${SSH:-ssh}
DRY_RUN=${DRY_RUN:-}

if [ $# -eq 0 ]; then
	echo "usage: $0 HOST..." >&2
	exit 3
fi
# Host names and URLs go through word splitting below (POSIX sh has no
# arrays): no globbing, and nothing in them may hold a space.
set -f
HOSTS=$*

log() { printf '%s staggered-restart: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# headroom_url HOST: the headroom of HOST's Valkey listener (and its
# conntrack table), judged against MIN_HEADROOM.
headroom_url() {
	printf 'http://%s:%s/api/v1/headroom?min=%s&port=%s' "$1" "$STORMWATCH_PORT" "$MIN_HEADROOM" "$VALKEY_PORT"
}

# wait_fleet: until every host is ok, or WAIT_TIMEOUT.
wait_fleet() {
	urls=""
	for h in $HOSTS; do
		urls="$urls --url $(headroom_url "$h")"
	done
	# shellcheck disable=SC2086 # one word per flag and URL
	stormwatch headroom --wait --timeout "$WAIT_TIMEOUT" --interval 2s $urls
}

# drain HOST: close HOST's clients, paced by the other hosts' headroom.
drain() {
	host=$1
	pace=""
	for h in $HOSTS; do
		# Single quotes: the command line is read again by the remote shell.
		[ "$h" = "$host" ] || pace="$pace --pace-by '$(headroom_url "$h")'"
	done
	if [ -z "$pace" ]; then
		log "$host is the only host: its clients have nowhere else to go; draining at the plain pace"
	fi
	dry=""
	[ "$DRY_RUN" = 1 ] && dry=" --dry-run"
	"$SSH" "$host" "stormwatch drain --port $VALKEY_PORT --method $METHOD --batch $BATCH --every $EVERY" \
		"--min-headroom $MIN_HEADROOM --timeout $WAIT_TIMEOUT$pace$dry"
}

for host in $HOSTS; do
	log "waiting for headroom on every host before $host"
	rc=0
	wait_fleet || rc=$?
	if [ "$rc" -ne 0 ]; then
		log "the fleet has no headroom (exit $rc): stopping before $host"
		exit "$rc"
	fi

	log "draining $host"
	rc=0
	drain "$host" || rc=$?
	if [ "$rc" -ne 0 ]; then
		log "the drain of $host did not finish (exit $rc): not restarting it; stopping"
		exit "$rc"
	fi

	if [ "$DRY_RUN" = 1 ]; then
		log "dry run: not restarting $host"
	else
		log "restarting Valkey on $host"
		rc=0
		"$SSH" "$host" "$RESTART" || rc=$?
		if [ "$rc" -ne 0 ]; then
			log "the restart of $host failed (exit $rc): stopping"
			exit "$rc"
		fi
	fi

	log "waiting for headroom on every host after $host"
	rc=0
	wait_fleet || rc=$?
	if [ "$rc" -ne 0 ]; then
		log "the fleet did not recover after $host (exit $rc): stopping"
		exit "$rc"
	fi
done
log "done: $HOSTS"
