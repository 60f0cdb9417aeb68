#!/usr/bin/env bash
# Fetch the pinned jars of jars/jars.txt into jars/ with Maven, and verify their SHA-256.
#
#   jars/fetch.sh                 every jar of jars.txt
#   jars/fetch.sh deequ tfrecord  only the coordinates whose artifact contains one of these words
#   jars/fetch.sh --optional ...  never fail: a jar that cannot be had is one line on stderr
#                                 (the set-up uses this; the jar-free paths then run instead)
#   JARS_DIR=DIR                  write into DIR instead of jars/
#   MAVEN_REPO=URL                resolve from this repository (a mirror) instead of Maven Central
#   MVN=PATH                      the Maven client (default: mvn on PATH)
#
# Maven keeps what it downloads in ~/.m2, so a second set-up (or a clean clone) needs no
# network: a jar already in jars/ with the pinned checksum is not fetched again, one in ~/.m2
# is copied offline. Maven itself checks the repository's checksums (-C); this script then
# checks the SHA-256 pinned in jars.txt, so a jar is exactly the one the tests ran with.
# Exit status: 0 when every requested jar is in place and verified, 1 otherwise (and always 0
# with --optional).
set -uo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
here="${JARS_DIR:-$src}"
optional=0
if [ "${1:-}" = "--optional" ]; then optional=1; shift; fi
mkdir -p "$here"
plugin="org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
mvn="${MVN:-mvn}"

say() { echo "jars: $*" >&2; }
sha256() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }

missing=()
while read -r coord sum _; do
  IFS=: read -r group artifact version <<<"$coord"
  if [ $# -gt 0 ]; then
    match=0; for w in "$@"; do [[ "$artifact" == *"$w"* ]] && match=1; done
    [ $match = 1 ] || continue
  fi
  jar="$here/$artifact-$version.jar"
  # A sum of "-" (a jar never fetched where jars.txt was written) trusts Maven's checksum only.
  if [ -f "$jar" ] && { [ "$sum" = "-" ] || [ "$(sha256 "$jar")" = "$sum" ]; }; then continue; fi
  rm -f "$jar"
  if ! command -v "$mvn" >/dev/null 2>&1; then
    say "$mvn not found, cannot fetch $coord (install Maven: apt-get install maven; or pass --packages $coord to spark-submit on a cluster)"
    missing+=("$coord"); continue
  fi
  repo_args=()
  [ -n "${MAVEN_REPO:-}" ] && repo_args=(-DremoteRepositories="mirror::default::$MAVEN_REPO")
  log="$(mktemp)"
  # Offline first (the jar may already be in ~/.m2), then from the repository.
  if ! "$mvn" -B -q -o -C "$plugin:copy" -Dartifact="$coord" -DoutputDirectory="$here" \
         -Dmdep.overWriteReleases=true >"$log" 2>&1 &&
     ! "$mvn" -B -q -C "$plugin:copy" -Dartifact="$coord" -DoutputDirectory="$here" \
         -Dmdep.overWriteReleases=true "${repo_args[@]}" >"$log" 2>&1; then
    if grep -qE "was not found in|Could not find artifact" "$log"; then why="not in ${MAVEN_REPO:-Maven Central}"
    elif grep -qiE "Unknown host|Connection refused|timed out|Could not transfer|Network is unreachable" "$log"; then why="${MAVEN_REPO:-Maven Central} unreachable"
    else why="mvn failed: $(grep -m1 ERROR "$log" | cut -c1-160)"; fi
    say "cannot fetch $coord ($why); the stages that need it use their jar-free path (on a cluster: --packages $coord)"
    rm -f "$log"; missing+=("$coord"); continue
  fi
  rm -f "$log"
  got="$(sha256 "$jar")"
  if [ "$sum" != "-" ] && [ "$got" != "$sum" ]; then
    say "checksum mismatch for $coord: sha256 $got, jars.txt pins $sum; removed it"
    rm -f "$jar"; missing+=("$coord"); continue
  fi
  echo "$jar"
done < <(grep -v '^\s*#' "$src/jars.txt" | grep -v '^\s*$')

[ ${#missing[@]} -eq 0 ] || [ $optional = 1 ] || exit 1
exit 0
