#!/bin/sh
# Rabbit forwards everything but TCP to PORT (default 8080), which it drops.
# Usage: firewall.sh [PORT]
set -e
port=${1:-8080}
nft add table inet filter
nft add chain inet filter forward '{ type filter hook forward priority 0 ; policy accept ; }'
nft add rule inet filter forward tcp dport "$port" drop
nft list ruleset
