package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/drain"
	"github.com/stormwatch/stormwatch/headroom"
	"github.com/stormwatch/stormwatch/internal/valkey"
)

// TestValkeySettings: the config file's target with the server's address
// wins over the section's defaults (addresses compared by value), the
// flags win over both, and a drain's commands get a longer timeout when
// none is set.
func TestValkeySettings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "stormwatch.yml")
	conf := `valkey:
  username: monitor
  password_file: pw
  targets:
    - address: "[::1]:6380"
      password_file: /etc/valkey/other
      timeout: 3s
`
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &drainFlags{configFile: path}
	c, err := f.config()
	if err != nil {
		t.Fatal(err)
	}
	settings := valkeySettings(f, c)
	tests := []struct {
		addr string
		want valkey.Config
	}{
		{"127.0.0.1:6379", valkey.Config{Address: "127.0.0.1:6379", Username: "monitor", PasswordFile: filepath.Join(dir, "pw"), Timeout: drainValkeyTimeout}},
		{"[0:0::1]:6380", valkey.Config{Address: "[0:0::1]:6380", Username: "monitor", PasswordFile: "/etc/valkey/other", Timeout: 3 * time.Second}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, settings(tt.addr)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.addr, diff)
		}
	}
	f.valkeyUser, f.valkeyPasswordFile = "drainer", "/run/secrets/valkey"
	got := settings("[::1]:6380")
	if got.Username != "drainer" || got.PasswordFile != "/run/secrets/valkey" {
		t.Errorf("flags over the file: %+v", got)
	}
	for _, tt := range []struct {
		a, b string
		same bool
	}{
		{"127.0.0.1:6379", "127.0.0.1:6379", true},
		{"[::1]:6379", "[0:0::1]:6379", true},
		{"[::ffff:127.0.0.1]:6379", "127.0.0.1:6379", true},
		{"127.0.0.1:6379", "127.0.0.1:6380", false},
		{"cache:6379", "127.0.0.1:6379", false},
		{"cache:6379", "cache:6379", true},
	} {
		if got := sameAddress(tt.a, tt.b); got != tt.same {
			t.Errorf("sameAddress(%s, %s) = %v", tt.a, tt.b, got)
		}
	}
}

// TestHeadroomOf: what the pacing reads of this host's Report; one with
// no figure is not ok, whatever it says.
func TestHeadroomOf(t *testing.T) {
	h := 0.22
	r := &headroom.Report{OK: false, Headroom: &h, Limiting: &headroom.Queue{Name: "accept queue 127.0.0.1:6380"},
		Reasons: []string{"accept queue of 127.0.0.1:6380 at 78% (limit 128)"}}
	want := drain.Headroom{OK: false, Headroom: 0.22, Limiting: "accept queue 127.0.0.1:6380", Reasons: r.Reasons}
	if diff := cmp.Diff(want, headroomOf(r)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := headroomOf(&headroom.Report{OK: true, NoData: true}); got.OK || got.Headroom != 0 {
		t.Errorf("a report without a figure: %+v, want not ok", got)
	}
}
