#!/bin/sh
# Rabbit routes IPv4 between its links.
set -e
sysctl -w net.ipv4.ip_forward=1
