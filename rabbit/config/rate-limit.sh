#!/bin/sh
# Rabbit limits what it sends on DEV (default eth1) to RATE (default 1mbit).
# Usage: rate-limit.sh [DEV] [RATE]
set -e
dev=${1:-eth1}
rate=${2:-1mbit}
tc qdisc replace dev "$dev" root tbf rate "$rate" burst 16kb latency 400ms
tc qdisc show dev "$dev"
