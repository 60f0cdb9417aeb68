#!/usr/bin/env bash
# spark-submit for reviewlake jobs: ./spark-submit.sh [spark options] jobs/<stage>.py [job args]
#
# Runs the venv's spark-submit. Adds what every reviewlake job needs (see
# lib/reviewlake/launch/submit.py): --master from the profile (local[*] by default), the
# profile's driver memory in local mode, every jar in jars/ with --jars, the profile's
# --packages, and for non-local masters the packaged library with --py-files. All other
# arguments pass through, so `./spark-submit.sh jobs/ingest.py --input X --output Y` runs the
# same program as `reviewlake ingest --input X --output Y`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${REVIEWLAKE_VENV:-$here/.venv}"
if [ ! -x "$venv/bin/spark-submit" ]; then
  echo "spark-submit.sh: error: $venv/bin/spark-submit not found; run 'make setup' first (or set REVIEWLAKE_VENV)" >&2
  exit 2
fi
args=()
while IFS= read -r line; do args+=("$line"); done < <("$venv/bin/python" -m reviewlake.launch.submit "$@"; echo "rc=$?")
rc="${args[${#args[@]}-1]#rc=}"
unset 'args[${#args[@]}-1]'
[ "$rc" = 0 ] || exit "$rc"
# Python workers run the venv's interpreter, not whatever python3 is first on PATH.
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$venv/bin/python}"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$venv/bin/python}"
case " ${args[*]} " in
  *" --master local"*) export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}" ;;  # laptop: loopback
esac
exec "$venv/bin/spark-submit" "${args[@]}"
