package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/collector"
)

func TestRunExitCodes(t *testing.T) {
	tests := []struct {
		args    []string
		code    int
		wantOut string
	}{
		{[]string{"--help"}, exitOK, "connection storms"},
		{[]string{"run", "--help"}, exitOK, "--collect.interval"},
		{[]string{"--bogus"}, exitUnknown, "unknown long flag"},
		{[]string{"run", "--collect.interval=1ms"}, exitUnknown, "must be at least 10ms"},
		{[]string{"run", "--collect.listeners.include-ports=70000"}, exitUnknown, "is not a port"},
		{[]string{"run", "--collect.listeners.exclude-ports=10-5"}, exitUnknown, "end below start"},
		{[]string{"run", "--collect.history=-1"}, exitUnknown, "must not be negative"},
		{[]string{"run", "--web.config.file=/nonexistent/web.yml", "--web.listen-address=127.0.0.1:0"}, exitUnknown, "web.yml"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			if code := run(tt.args, &out, &out); code != tt.code {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tt.code, out.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantOut, out.String())
			}
		})
	}
}

func TestParsePortRanges(t *testing.T) {
	got, err := parsePortRanges(" 6379, 7000-7010 ,1")
	if err != nil {
		t.Fatal(err)
	}
	want := []collector.PortRange{{Lo: 6379, Hi: 6379}, {Lo: 7000, Hi: 7010}, {Lo: 1, Hi: 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"0", "x", "1-", "-5", "65536", "5-1", "1,,2"} {
		if _, err := parsePortRanges(bad); err == nil {
			t.Errorf("parsePortRanges(%q) accepted", bad)
		}
	}
}
