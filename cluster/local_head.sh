#!/usr/bin/env bash
# Start a Ray head on this machine with token authentication on and the dashboard/job server on
# 127.0.0.1 only. docs/cluster.md#a-head-on-this-machine and tests/test_auth.py both run this file, so the
# documented commands are the tested ones.
#
#   cluster/local_head.sh                      # then: export RAY_AUTH_MODE=token; ray job submit ...
#   cluster/local_head.sh --num-cpus=8 --block # any further `ray start` flags are passed through
#
# Why each line: `ray start` turns auth on only if RAY_AUTH_MODE=token is in its environment or a
# token already exists, and with the mode set it refuses to start without a token (it never creates
# one), so the token is made first. umask 077 keeps ~/.ray/auth_token readable by its owner only.
set -euo pipefail
export RAY_AUTH_MODE=token
(umask 077 && ray get-auth-token --generate >/dev/null)   # creates ~/.ray/auth_token once; keeps an existing one
# A token that ray.init() made earlier is world-readable (Ray writes it with the default umask).
if [ -f "$HOME/.ray/auth_token" ]; then chmod 600 "$HOME/.ray/auth_token"; fi
exec ray start --head --node-ip-address=127.0.0.1 --dashboard-host=127.0.0.1 --disable-usage-stats "$@"
