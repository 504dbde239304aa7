#!/usr/bin/env bash
# Benchmarks stormwatch against its references, all measured in the same run
# (see docs/benchmarks.md): the in-process Go benchmarks of the collector,
# then "stormlab bench", which builds socket populations of 10k, 100k and
# 200k sockets in fresh network namespaces and times stormwatch's collection
# cycle (one walk of the socket table, and one per address family) and
# /metrics scrape against ss(8) and node_exporter's tcpstat collector,
# measures the daemon's CPU and memory calm and in storm mode and its
# sampling with the machine loaded by a CPU-bound process, the accept-queue
# detection lead time with and without storm mode and the reconnection
# storms, and prints the markdown tables of docs/benchmarks.md.
#
#   sudo scripts/bench.sh                      # everything (about 10 minutes)
#   sudo scripts/bench.sh --sizes 10000,50000  # flags go to "stormlab bench"
#   BENCH_OUT=docs/benchmarks-run.md sudo -E scripts/bench.sh
#
# Needs root, Go, and the Debian packages iproute2, nftables,
# redis-server and prometheus-node-exporter. Everything it starts runs in
# namespaces it deletes on exit.
set -euo pipefail

cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
	echo "bench.sh: needs root (it creates network namespaces)" >&2
	exit 2
fi
missing=()
for tool in ip ss nft redis-server; do
	command -v "$tool" >/dev/null || missing+=("$tool")
done
command -v prometheus-node-exporter >/dev/null || command -v node_exporter >/dev/null || missing+=(prometheus-node-exporter)
if ((${#missing[@]})); then
	echo "bench.sh: missing ${missing[*]} (Debian: iproute2 nftables redis-server prometheus-node-exporter)" >&2
	exit 2
fi

GO=${GO:-go}
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
"$GO" build -trimpath -o "$bin/stormwatch" ./cmd/stormwatch
"$GO" build -trimpath -o "$bin/stormlab" ./cmd/stormlab

echo "## Go benchmarks (in-process parts)"
echo
echo '```'
"$GO" test ./collector -run '^$' -bench 'SamplerCycle|MetricsScrape|ListenersCollect' -benchmem -benchtime 200x | grep -E '^(Benchmark|ok|FAIL|---)'
echo '```'
echo

echo "## stormlab bench"
echo
args=(--stormwatch "$bin/stormwatch")
if [[ -n ${BENCH_OUT:-} ]]; then
	args+=(-o "$BENCH_OUT")
fi
"$bin/stormlab" bench "${args[@]}" "$@"
