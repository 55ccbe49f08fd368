#!/bin/sh
# Addresses of Rabbit's links: eth<i> gets 192.168.<i+1>.1/24.
# Usage: addresses.sh LINKS
set -e
n=$1
i=0
while [ "$i" -lt "$n" ]; do
  ip addr add "192.168.$((i + 1)).1/24" dev "eth$i"
  ip link set "eth$i" up
  i=$((i + 1))
done
