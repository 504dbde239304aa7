#!/bin/sh
# Usage: manpage.sh BINARY VERSION
# Prints stormwatch(1) in troff from the binary's --help-man, with a title
# line naming VERSION (kingpin's own spans several lines) and a NAME line
# whatis(1) can parse. The date is SOURCE_DATE_EPOCH's, if set.
set -eu
bin=$1
version=$2
date=""
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
	date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)
fi
printf '.TH STORMWATCH 1 "%s" "stormwatch %s" "User Commands"\n' "$date" "$version"
"$bin" --help-man | sed \
	-e '1,/^\.SH "NAME"$/{/^\.SH "NAME"$/!d;}' \
	-e '/^\.SH "NAME"$/{n;s/.*/stormwatch \\- early warning of TCP connection storms on Linux hosts/;}'
