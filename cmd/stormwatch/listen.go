package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/mdlayher/vsock"
	"github.com/prometheus/exporter-toolkit/web"
)

// bindWeb binds the web listeners the flags ask for, before the daemon
// tells systemd it is ready: a port already taken is a startup failure,
// not a "ready" daemon that then exits. It accepts what exporter-toolkit's
// ListenAndServe accepts: systemd socket activation, vsock://:PORT and TCP
// addresses.
func bindWeb(f *web.FlagConfig) ([]net.Listener, error) {
	if f.WebSystemdSocket != nil && *f.WebSystemdSocket {
		ls, err := activation.Listeners()
		if err != nil {
			return nil, fmt.Errorf("--web.systemd-socket: %w", err)
		}
		if len(ls) == 0 {
			return nil, errors.New("--web.systemd-socket: systemd passed no socket")
		}
		return ls, nil
	}
	if f.WebListenAddresses == nil || len(*f.WebListenAddresses) == 0 {
		return nil, errors.New("--web.listen-address: no address to listen on")
	}
	var out []net.Listener
	for _, addr := range *f.WebListenAddresses {
		l, err := listenOne(addr)
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, fmt.Errorf("--web.listen-address %q: %w", addr, err)
		}
		out = append(out, l)
	}
	return out, nil
}

func listenOne(addr string) (net.Listener, error) {
	if !strings.HasPrefix(addr, "vsock://") {
		return net.Listen("tcp", addr)
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, err
	}
	_, p, err := net.SplitHostPort(u.Host)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(p, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("vsock port %q: want a number", p)
	}
	return vsock.Listen(uint32(port), nil)
}
