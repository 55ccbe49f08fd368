#!/bin/sh
# Rabbit balances HTTP on LISTEN (default 192.168.1.1:80) round-robin over
# the BACKEND addresses given (host:port), with nginx.
# Usage: load-balancer.sh LISTEN BACKEND...
set -e
listen=$1
shift
{
  echo "worker_processes 1;"
  echo "pid /run/nginx.pid;"
  echo "error_log /var/log/nginx/error.log;"
  echo "events { worker_connections 64; }"
  echo "http {"
  echo "  access_log /var/log/nginx/access.log;"
  echo "  upstream backends {"
  for b in "$@"; do echo "    server $b;"; done
  echo "  }"
  echo "  server {"
  echo "    listen $listen;"
  echo "    location / { proxy_pass http://backends; }"
  echo "  }"
  echo "}"
} >/etc/rabbit/nginx.conf
nginx -t -c /etc/rabbit/nginx.conf
nginx -c /etc/rabbit/nginx.conf
