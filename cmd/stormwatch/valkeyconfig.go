package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/internal/valkey"
)

// valkeyFileConfig is the valkey: section of the config file: the servers
// to poll and how.
type valkeyFileConfig struct {
	// Discover polls every local listener owned by valkey-server or
	// redis-server (default true).
	Discover *bool `yaml:"discover"`
	// Interval and Timeout of each poll (default 1s each).
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
	// Username, PasswordFile and TLS are the connection settings of the
	// discovered servers, and the defaults of the targets.
	Username     string                 `yaml:"username"`
	PasswordFile string                 `yaml:"password_file"`
	TLS          *valkeyTLSFileConfig   `yaml:"tls"`
	Targets      []valkeyTargetFileConf `yaml:"targets"`
}

// valkeyTargetFileConf is one server named in the config file.
type valkeyTargetFileConf struct {
	Address      string               `yaml:"address"`
	Username     string               `yaml:"username"`
	PasswordFile string               `yaml:"password_file"`
	TLS          *valkeyTLSFileConfig `yaml:"tls"`
	DialTimeout  time.Duration        `yaml:"dial_timeout"`
	Timeout      time.Duration        `yaml:"timeout"`
}

// valkeyTLSFileConfig is TLS towards a server.
type valkeyTLSFileConfig struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// valkeyConfig turns the section into the source's configuration, paths
// relative to dir, every problem reported in doc at its field.
func valkeyConfig(c valkeyFileConfig, dir string, doc *configDoc) collector.ValkeyConfig {
	out := collector.ValkeyConfig{Discover: c.Discover == nil || *c.Discover, Interval: c.Interval, Timeout: c.Timeout}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	tls := func(t *valkeyTLSFileConfig, def valkey.TLSConfig) valkey.TLSConfig {
		if t == nil {
			return def
		}
		return valkey.TLSConfig{Enabled: t.Enabled, CAFile: abs(t.CAFile), CertFile: abs(t.CertFile), KeyFile: abs(t.KeyFile),
			ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"valkey.interval", c.Interval}, {"valkey.timeout", c.Timeout}} {
		if d.v < 0 {
			doc.errorf(d.name, "%s is not a duration > 0 (e.g. 1s)", d.v)
		}
	}
	out.Defaults = valkey.Config{Username: c.Username, PasswordFile: abs(c.PasswordFile), TLS: tls(c.TLS, valkey.TLSConfig{}),
		DialTimeout: c.Timeout, Timeout: c.Timeout}
	for i, t := range c.Targets {
		field := fmt.Sprintf("valkey.targets[%d]", i)
		vc := out.Defaults
		vc.Address = t.Address
		if t.Username != "" {
			vc.Username = t.Username
		}
		if t.PasswordFile != "" {
			vc.PasswordFile = abs(t.PasswordFile)
		}
		vc.TLS = tls(t.TLS, out.Defaults.TLS)
		if t.DialTimeout != 0 {
			vc.DialTimeout = t.DialTimeout
		}
		if t.Timeout != 0 {
			vc.Timeout = t.Timeout
		}
		if err := vc.Validate(); err != nil {
			doc.errorf(field, "%v", err)
			continue
		}
		out.Targets = append(out.Targets, vc)
	}
	return out
}
