package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestNfpmConfig checks the package configuration: every source file exists
// (the binary and man page, built by deb.mk, excepted), the paths the
// package promises are there, /etc/default/stormwatch is a conffile and the
// maintainer scripts are executable and parse.
func TestNfpmConfig(t *testing.T) {
	b, err := os.ReadFile("nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Contents []struct {
			Src  string `yaml:"src"`
			Dst  string `yaml:"dst"`
			Type string `yaml:"type"`
		} `yaml:"contents"`
		Scripts map[string]string `yaml:"scripts"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("nfpm.yaml: %v", err)
	}
	root := repoRoot(t)
	dsts := map[string]string{}
	for _, c := range cfg.Contents {
		dsts[c.Dst] = c.Type
		if strings.Contains(c.Src, "${STORMWATCH_DEB_BUILD}") {
			continue // built by deb.mk
		}
		if _, err := os.Stat(filepath.Join(root, c.Src)); err != nil {
			t.Errorf("%s → %s: %v", c.Src, c.Dst, err)
		}
	}
	for _, dst := range []string{
		"/usr/bin/stormwatch",
		"/lib/systemd/system/stormwatch.service",
		"/etc/default/stormwatch",
		"/usr/share/man/man1/stormwatch.1.gz",
		"/usr/share/doc/stormwatch/README.md",
		"/usr/share/stormwatch/prometheus/stormwatch.rules.yml",
		"/usr/share/stormwatch/grafana/stormwatch.json",
		"/usr/share/stormwatch/rollouts/staggered-restart.sh",
	} {
		if _, ok := dsts[dst]; !ok {
			t.Errorf("package does not install %s", dst)
		}
	}
	if typ := dsts["/etc/default/stormwatch"]; typ != "config" {
		t.Errorf("/etc/default/stormwatch: type %q, want config (a conffile)", typ)
	}

	scripts := []string{"manpage.sh"}
	for _, s := range []string{"postinstall", "preremove", "postremove"} {
		if cfg.Scripts[s] == "" {
			t.Errorf("no %s script", s)
			continue
		}
		scripts = append(scripts, filepath.Join(root, cfg.Scripts[s]))
	}
	for _, s := range scripts {
		fi, err := os.Stat(s)
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable", s)
		}
		if out, err := exec.Command("sh", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", s, err, out)
		}
	}
	postinst, err := os.ReadFile(filepath.Join(root, cfg.Scripts["postinstall"]))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(postinst), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, forbidden := range []string{"enable", "systemctl start", "systemctl restart"} {
			if strings.Contains(line, forbidden) {
				t.Errorf("postinst runs %q: the administrator enables and starts the service", strings.TrimSpace(line))
			}
		}
	}
}
