#!/usr/bin/env bash
# Nightly imgstats from cron: incremental, quiet on success, never two runs at once on a host.
#
# crontab -e:
#   # m h dom mon dow  command
#   17 2 * * *  /opt/imgstats/scripts/cron_imgstats.sh /opt/imgstats/configs/local.yaml >>/var/log/imgstats.log 2>&1
#
# - flock: a run still going when the next one starts makes the new one exit 75 (EX_TEMPFAIL)
#   at once instead of piling up. Across hosts, the store's exclusive create keeps versions
#   apart (each run gets its own number), so no shared lock is needed.
# - --quiet: nothing is printed on success, so cron mails only when something went wrong.
# - Exit status for monitoring: 0 a version was written or nothing had changed; 1 the run
#   failed; 2 bad usage or bad input (missing source, unreadable config, unreachable
#   scheduler or bucket); 75 another run holds the lock.
set -euo pipefail

config=${1:?usage: cron_imgstats.sh CONFIG.yaml [extra imgstats options]}
shift
imgstats=${IMGSTATS:-imgstats}
lock=${IMGSTATS_LOCK:-/tmp/imgstats-$(printf '%s' "$config" | cksum | cut -d' ' -f1).lock}

exec 9>"$lock"
if ! flock --nonblock 9; then
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) imgstats: another run holds $lock; not starting" >&2
    exit 75
fi
exec "$imgstats" compute --config "$config" --quiet "$@"
