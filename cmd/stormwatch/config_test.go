package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/testbin"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const customRules = `rules:
  - name: AcceptQueueNearFull
    scope: listener
    condition: accept_queue_fill >= 0.5
    severity: critical
  - name: ValkeyPortBusy
    scope: listener
    condition: port == 6379 and accept_queue > 0
`

func names(rules []*alerts.Rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.Name+"/"+string(r.Severity))
	}
	return out
}

func TestLoadRules(t *testing.T) {
	builtin := names(alerts.DefaultRules())
	without := func(drop ...string) []string {
		var out []string
	next:
		for _, n := range builtin {
			for _, d := range drop {
				if strings.HasPrefix(n, d+"/") {
					continue next
				}
			}
			out = append(out, n)
		}
		return out
	}
	tests := []struct {
		name    string
		config  string
		want    []string
		wantErr string
	}{
		{name: "no config file", config: "-", want: builtin},
		{name: "empty file", config: "", want: builtin},
		{name: "disable one", config: "disabled_rules: [SyncookiesDisabled]\n", want: without("SyncookiesDisabled")},
		{name: "replace by name and add", config: "rule_files: [custom.yml]\n",
			want: append(without("AcceptQueueNearFull"), "AcceptQueueNearFull/critical", "ValkeyPortBusy/warning")},
		{name: "only mine", config: "default_rules: false\nrule_files: ['cust*.yml']\n",
			want: []string{"AcceptQueueNearFull/critical", "ValkeyPortBusy/warning"}},
		{name: "unknown field", config: "rules_files: [x]\n", wantErr: `stormwatch.yml:1:1: unknown field "rules_files"; did you mean "rule_files"?`},
		{name: "unknown disabled rule", config: "disabled_rules: [NoSuchRule]\n", wantErr: `no built-in rule is named "NoSuchRule"`},
		{name: "missing rule file", config: "rule_files: [nope.yml]\n", wantErr: `stormwatch.yml:1:14: rule_files[0]: "nope.yml" matches no file`},
		{name: "bad rule file", config: "rule_files: [bad.yml]\n", wantErr: `bad.yml:3:5: rule "A": unknown field "expr"`},
		{name: "same rule twice", config: "rule_files: [custom.yml, again.yml]\n", wantErr: "defined twice"},
		{name: "disabled without defaults", config: "default_rules: false\ndisabled_rules: [SyncookiesDisabled]\n", wantErr: "default_rules is false"},
	}
	dir := t.TempDir()
	writeFile(t, dir, "custom.yml", customRules)
	writeFile(t, dir, "again.yml", customRules)
	writeFile(t, dir, "bad.yml", "rules:\n  - name: A\n    expr: up\n")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.config != "-" {
				path = writeFile(t, dir, "stormwatch.yml", tt.config)
			}
			rules, err := loadRules(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, names(rules)); diff != "" {
				t.Errorf("rules (-want +got):\n%s", diff)
			}
		})
	}
}

// TestShippedConfig loads the config file the package installs: it must
// give exactly the built-in rules.
func TestShippedConfig(t *testing.T) {
	rules, err := loadRules(filepath.Join("..", "..", "deploy", "stormwatch.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(names(alerts.DefaultRules()), names(rules)); diff != "" {
		t.Errorf("shipped config (-want +got):\n%s", diff)
	}
}

// TestReload changes the config under a running daemon: SIGHUP and POST
// /-/reload load a valid file; an invalid one keeps the running rules and
// sets config_last_reload_successful to 0.
func TestReload(t *testing.T) {
	testbin.RequireTools(t)
	ns := netnstest.New(t)
	dir := t.TempDir()
	cfg := writeFile(t, dir, "stormwatch.yml", "")
	d := startDaemon(t, ns, "", "--config="+cfg, "--web.enable-lifecycle")

	metric := func(name string) float64 {
		t.Helper()
		m, err := d.scrape()
		if err != nil {
			t.Fatal(err)
		}
		return value(m, name)
	}
	reloadOK := func() float64 { return metric("stormwatch_config_last_reload_successful") }
	builtin := float64(len(alerts.DefaultRules()))
	if v, n := reloadOK(), metric("stormwatch_rules"); v != 1 || n != builtin {
		t.Fatalf("at start: config_last_reload_successful = %v, rules = %v (want 1, %v)", v, n, builtin)
	}

	// An invalid file: the daemon keeps running its rules.
	writeFile(t, dir, "stormwatch.yml", "default_rules: maybe\n")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "failed reload reported", func() error {
		if v := reloadOK(); v != 0 {
			return fmt.Errorf("config_last_reload_successful = %v after a bad reload", v)
		}
		return nil
	})
	if n := metric("stormwatch_rules"); n != builtin {
		t.Errorf("after a bad reload %v rules run, want the %v running before", n, builtin)
	}
	if !strings.Contains(d.log.String(), "reload failed: keeping the running rules") {
		t.Errorf("no log line for the failed reload:\n%s", d.log)
	}

	// A rules glob that matches a FIFO: the reload fails at once (before,
	// it blocked forever on the FIFO and every later reload with it).
	rulesDir := filepath.Join(dir, "rules.d")
	if err := os.Mkdir(rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(rulesDir, "pipe.yml"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "stormwatch.yml", "rule_files: [rules.d/*.yml]\n")
	for range 3 {
		time.Sleep(minReloadInterval) // reloads are kept a second apart
		start := time.Now()
		_, err := d.request("POST", "/-/reload") // 5 s deadline
		if err == nil || !strings.Contains(err.Error(), "500 Internal Server Error") ||
			!strings.Contains(err.Error(), "pipe.yml: not a regular file: it is a FIFO (named pipe)") {
			t.Fatalf("reload with a FIFO in rule_files: %v", err)
		}
		t.Logf("reload with a FIFO in rule_files refused in %v", time.Since(start))
	}
	if v := reloadOK(); v != 0 {
		t.Errorf("config_last_reload_successful = %v after a reload that met a FIFO", v)
	}
	if err := os.Remove(filepath.Join(rulesDir, "pipe.yml")); err != nil {
		t.Fatal(err)
	}

	// Reloads are throttled: one right after another is refused.
	if _, err := d.request("POST", "/-/reload"); err == nil || !strings.Contains(err.Error(), "429") {
		t.Errorf("a reload right after another: %v, want 429 Too Many Requests", err)
	}
	// Only POST reloads.
	if _, err := d.request("GET", "/-/reload"); err == nil || !strings.Contains(err.Error(), "405") {
		t.Errorf("GET /-/reload: %v, want 405 Method Not Allowed", err)
	}

	// A valid one, through the HTTP endpoint.
	writeFile(t, dir, "stormwatch.yml", "disabled_rules: [SyncookiesDisabled]\n")
	time.Sleep(minReloadInterval)
	if _, err := d.request("POST", "/-/reload"); err != nil {
		t.Fatal(err)
	}
	if v, n := reloadOK(), metric("stormwatch_rules"); v != 1 || n != builtin-1 {
		t.Fatalf("after a good reload: config_last_reload_successful = %v, rules = %v (want 1, %v)", v, n, builtin-1)
	}
	want := fmt.Sprintf("rules=%d", len(alerts.DefaultRules())-1)
	if !strings.Contains(d.log.String(), "msg=reloaded") || !strings.Contains(d.log.String(), want) {
		t.Errorf("log does not show a reload to %s:\n%s", want, d.log)
	}
}

// TestReloadNeedsLifecycle: without --web.enable-lifecycle POST /-/reload
// is refused (anyone who reaches the port could make the daemon reload);
// SIGHUP still works.
func TestReloadNeedsLifecycle(t *testing.T) {
	testbin.RequireTools(t)
	ns := netnstest.New(t)
	d := startDaemon(t, ns, "")
	_, err := d.request("POST", "/-/reload")
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "--web.enable-lifecycle") {
		t.Fatalf("POST /-/reload without --web.enable-lifecycle: %v, want 403 naming the flag", err)
	}
	if strings.Contains(d.log.String(), "msg=reloaded") {
		t.Error("the daemon reloaded")
	}
}
