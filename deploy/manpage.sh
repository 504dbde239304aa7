#!/bin/sh
# Usage: manpage.sh BINARY VERSION
# Prints stormwatch(1) in troff: a title line naming VERSION, then
# stormwatch.1.in (next to this script: NAME, SYNOPSIS, DESCRIPTION,
# CONFIGURATION, HTTP ENDPOINTS, FILES, SIGNALS, EXIT STATUS, ...) with its
# "@OPTIONS-AND-COMMANDS@" line replaced by the OPTIONS and COMMANDS
# sections of the binary's --help-man, so the flags are always the
# binary's own. The date is SOURCE_DATE_EPOCH's, if set.
set -eu
bin=$1
version=$2
src=$(dirname "$0")/stormwatch.1.in
date=""
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
	date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)
fi
generated=$(mktemp)
trap 'rm -f "$generated"' EXIT
"$bin" --help-man | sed -n '/^\.SH "OPTIONS"$/,$p' >"$generated"
if ! grep -q '^\.SH "COMMANDS"$' "$generated"; then
	echo "manpage.sh: $bin --help-man has no OPTIONS and COMMANDS sections" >&2
	exit 1
fi
grep -q '^\.\\" @OPTIONS-AND-COMMANDS@$' "$src" || {
	echo "manpage.sh: $src has no @OPTIONS-AND-COMMANDS@ line" >&2
	exit 1
}
printf '.TH STORMWATCH 1 "%s" "stormwatch %s" "User Commands"\n' "$date" "$version"
awk -v gen="$generated" '
	/^\.\\" @OPTIONS-AND-COMMANDS@$/ { while ((getline line < gen) > 0) print line; next }
	{ print }
' "$src"
