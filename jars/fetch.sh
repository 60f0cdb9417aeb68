#!/usr/bin/env bash
# Fetch the optional jars of jars/jars.txt into jars/.
#
#   jars/fetch.sh                 every jar in jars.txt from Maven Central (or $MAVEN_REPO)
#   jars/fetch.sh deequ tfrecord  only the coordinates whose artifact matches these words
#   jars/fetch.sh --s3a-from-pypi hadoop-aws 3.3.1 + aws-java-sdk-bundle 1.11.901 taken from the
#                                 sagemaker-pyspark 1.4.5 source distribution on PyPI, for
#                                 machines that reach PyPI but not Maven (never pip-install
#                                 that package: it pins pyspark 3.3.0)
#   JARS_DIR=DIR jars/fetch.sh ... writes into DIR instead of jars/
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
here="${JARS_DIR:-$src}"
mkdir -p "$here"
repo="${MAVEN_REPO:-https://repo1.maven.org/maven2}"

if [ "${1:-}" = "--s3a-from-pypi" ]; then
  pip="${PIP:-$src/../.venv/bin/pip}"
  [ -x "$pip" ] || pip=pip
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  "$pip" download -q --no-deps --no-binary :all: "sagemaker-pyspark==1.4.5" -d "$tmp" \
    || { echo "fetch.sh: cannot download sagemaker-pyspark 1.4.5 from PyPI" >&2; exit 1; }
  tar -xzf "$tmp"/sagemaker_pyspark-1.4.5.tar.gz -C "$tmp"
  for jar in hadoop-aws-3.3.1.jar aws-java-sdk-bundle-1.11.901.jar; do
    found="$(find "$tmp" -name "$jar" | head -1)"
    [ -n "$found" ] || { echo "fetch.sh: $jar not found in the sdist" >&2; exit 1; }
    cp "$found" "$here/$jar"; echo "$here/$jar"
  done
  exit 0
fi

status=0
while read -r coord; do
  IFS=: read -r group artifact version <<<"$coord"
  if [ $# -gt 0 ]; then
    match=0; for w in "$@"; do [[ "$artifact" == *"$w"* ]] && match=1; done
    [ $match = 1 ] || continue
  fi
  jar="$artifact-$version.jar"
  [ -f "$here/$jar" ] && { echo "$here/$jar (present)"; continue; }
  url="$repo/${group//.//}/$artifact/$version/$jar"
  if curl -fsL --connect-timeout 10 -o "$here/$jar.part" "$url"; then
    mv "$here/$jar.part" "$here/$jar"; echo "$here/$jar"
  else
    rm -f "$here/$jar.part"
    echo "fetch.sh: cannot download $url (Maven unreachable? set MAVEN_REPO, or use --packages $coord on the cluster)" >&2
    status=1
  fi
done < <(grep -v '^\s*#' "$src/jars.txt" | grep -v '^\s*$')
exit $status
