package drain

import (
	"os"
	"strings"
	"testing"

	"github.com/stormwatch/stormwatch/internal/valkey"
)

// FuzzIndexClients: whatever CLIENT LIST text the server sends, the
// clients indexed are TCP clients whose two ends parse back to their key,
// unmapped, never more than were listed.
func FuzzIndexClients(f *testing.F) {
	fixture, err := os.ReadFile("testdata/client-list-redis-7.0.15.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(fixture))
	f.Add("id=1 addr=[::ffff:10.0.0.1]:5 laddr=[::ffff:10.0.0.2]:6379 flags=N\n")
	f.Add("id=2 addr=[fe80::1%eth0]:5 laddr=[fe80::2%eth0]:6379 flags=S\n")
	f.Add("id=3 addr=10.0.0.1:99999 laddr=10.0.0.2:6379\nid=4 addr= laddr=:\n")
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 1<<16 {
			return // over the size cap: larger inputs only slow the fuzzer
		}
		list, err := valkey.ParseClientList(text, 0)
		if err != nil {
			return
		}
		idx := indexClients(list)
		if len(idx) > len(list) {
			t.Fatalf("%d indexed from %d clients", len(idx), len(list))
		}
		for k, c := range idx {
			if !k.local.IsValid() || !k.remote.IsValid() || k.local.Addr().Is4In6() || k.remote.Addr().Is4In6() || k.local.Addr().Zone() != "" {
				t.Fatalf("key %v of %+v", k, c)
			}
			l, ok := parseAddrPort(c.LAddr)
			r, ok2 := parseAddrPort(c.Addr)
			if !ok || !ok2 || l != k.local || r != k.remote {
				t.Fatalf("key %v does not parse back from laddr %q addr %q", k, c.LAddr, c.Addr)
			}
			if strings.HasPrefix(c.Addr, "/") {
				t.Fatalf("a Unix socket client indexed: %+v", c)
			}
		}
	})
}
