#!/usr/bin/env bash
# Nightly imgstats from cron: incremental, quiet on success, never two runs at once on a host.
#
# crontab -e (the line works as written: cron's PATH needs no virtual environment in it):
#   # m h dom mon dow  command
#   17 2 * * *  /opt/imgstats/scripts/cron_imgstats.sh /opt/imgstats/configs/local.yaml >>/var/log/imgstats.log 2>&1
#
# - The imgstats to run: $IMGSTATS if set (a path, or a command on PATH); else the one in the
#   checkout's own virtual environment (.venv/bin/imgstats beside scripts/); else `imgstats`
#   on PATH.
# - flock: a run still going when the next one starts makes the new one exit 75 (EX_TEMPFAIL)
#   at once instead of piling up. Across hosts, the store's exclusive create keeps versions
#   apart (each run gets its own number), so no shared lock is needed.
# - --quiet: nothing is printed on success, so cron mails only when something is worth a look:
#   a failure, or one line when files had to be skipped.
# - Every line this script and imgstats print carries a UTC timestamp.
# - Exit status for monitoring: 0 a version was written or nothing had changed; 1 the run
#   failed; 2 bad usage or bad input (missing source, unreadable config, unreachable
#   scheduler or bucket); 75 another run holds the lock; 127 no imgstats found.
set -euo pipefail

stamp() {
    local line
    while IFS= read -r line || [ -n "$line" ]; do
        printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$line"
    done
}

say() {
    printf 'imgstats: %s\n' "$*" | stamp >&2
}

config=${1:?usage: cron_imgstats.sh CONFIG.yaml [extra imgstats options]}
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
imgstats=${IMGSTATS:-}
if [ -z "$imgstats" ]; then
    if [ -x "$here/../.venv/bin/imgstats" ]; then
        imgstats=$here/../.venv/bin/imgstats
    elif command -v imgstats >/dev/null; then
        imgstats=imgstats
    else
        say "no imgstats in $here/../.venv/bin or on PATH ($PATH); set IMGSTATS=/path/to/venv/bin/imgstats"
        exit 127
    fi
fi
lock=${IMGSTATS_LOCK:-/tmp/imgstats-$(printf '%s' "$config" | cksum | cut -d' ' -f1).lock}

exec 9>"$lock"
if ! flock --nonblock 9; then
    say "another run holds $lock; not starting"
    exit 75
fi
status=0
"$imgstats" compute --config "$config" --quiet "$@" 2>&1 | stamp || status=${PIPESTATUS[0]}
exit "$status"
