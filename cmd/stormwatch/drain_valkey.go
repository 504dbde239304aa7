package main

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/stormwatch/stormwatch/drain"
	"github.com/stormwatch/stormwatch/internal/valkey"
)

// drainValkeyTimeout bounds each command of --method valkey when the
// config file sets no timeout: a CLIENT LIST of 50,000 clients is about
// 15 MiB.
const drainValkeyTimeout = 5 * time.Second

// valkeyMethod makes --method valkey: the drain.Valkey method over one
// valkey.Client, reaching the server at --valkey or through the drained
// listener, with the connection settings of the config file's valkey
// section (the target with that address, else the section's defaults)
// and --valkey-user / --valkey-password-file over them.
func valkeyMethod(f *drainFlags) (drain.Method, error) {
	conf, err := f.config()
	if err != nil {
		return nil, err
	}
	if f.valkeyAddr != "" {
		if err := (valkey.Config{Address: f.valkeyAddr}).Validate(); err != nil {
			return nil, fmt.Errorf("--valkey: %w", err)
		}
	}
	settings := valkeySettings(f, conf)
	// The settings are checked now, with the address the server will
	// most likely have, so that a bad file is refused before anything
	// is listed.
	probe := f.valkeyAddr
	if probe == "" {
		probe = "127.0.0.1:6379"
	}
	if err := settings(probe).Validate(); err != nil {
		return nil, err
	}
	return &drain.Valkey{
		Address: f.valkeyAddr,
		Connect: func(addr string) (drain.ValkeyServer, error) {
			return valkey.New(settings(addr))
		},
	}, nil
}

// valkeySettings returns how to reach the server at an address: the
// config file's valkey target with that address, else the section's
// defaults, with --valkey-user and --valkey-password-file over them, and
// drainValkeyTimeout when no timeout is set.
func valkeySettings(f *drainFlags, conf *config) func(addr string) valkey.Config {
	return func(addr string) valkey.Config {
		c := conf.valkey.Defaults
		for _, t := range conf.valkey.Targets {
			if sameAddress(t.Address, addr) {
				c = t
				break
			}
		}
		c.Address = addr
		if f.valkeyUser != "" {
			c.Username = f.valkeyUser
		}
		if f.valkeyPasswordFile != "" {
			c.PasswordFile = f.valkeyPasswordFile
		}
		if c.Timeout == 0 {
			c.Timeout = drainValkeyTimeout
		}
		return c
	}
}

// sameAddress compares two host:port addresses, IP addresses by value
// ("[::1]:6379" and "[0:0::1]:6379" are the same).
func sameAddress(a, b string) bool {
	if a == b {
		return true
	}
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp {
		return false
	}
	x, err1 := netip.ParseAddr(ah)
	y, err2 := netip.ParseAddr(bh)
	return err1 == nil && err2 == nil && x.Unmap() == y.Unmap()
}
