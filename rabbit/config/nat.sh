#!/bin/sh
# Rabbit masquerades traffic leaving through DEV (default eth1).
# Usage: nat.sh [DEV]
set -e
dev=${1:-eth1}
nft add table ip nat
nft add chain ip nat postrouting '{ type nat hook postrouting priority 100 ; }'
nft add rule ip nat postrouting oifname "$dev" masquerade
nft list ruleset
