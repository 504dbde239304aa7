package valkey

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// killServer is a fake server's client table for CLIENT KILL: multi is
// whether it takes several ids after one ID (Valkey ≥ 8.1) or answers
// that form with a syntax error (Redis 7.0, Valkey 8.0).
type killServer struct {
	multi bool
	mu    sync.Mutex
	alive map[int64]bool
	kills []string // every CLIENT KILL received, as "id1 id2 ..."
}

func (k *killServer) reply(args []string) string {
	if len(args) < 4 || !strings.EqualFold(args[0], "client") || !strings.EqualFold(args[1], "kill") || !strings.EqualFold(args[2], "id") {
		return "+OK\r\n" // the handshake (CLIENT SETNAME, ...)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kills = append(k.kills, strings.Join(args[3:], " "))
	if len(args) > 4 && !k.multi {
		return "-ERR syntax error\r\n"
	}
	n := 0
	for _, a := range args[3:] {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			return "-ERR client-id should be greater than 0\r\n"
		}
		if k.alive[id] {
			delete(k.alive, id)
			n++
		}
	}
	return fmt.Sprintf(":%d\r\n", n)
}

// TestKillForms: a server that takes several ids after one ID gets one
// command per batch; one that answers that form with a syntax error gets
// one command per id from then on, and nothing is killed twice or missed.
func TestKillForms(t *testing.T) {
	for _, tt := range []struct {
		name  string
		multi bool
		want  []string
	}{
		{"valkey 8.1", true, []string{"1 2 3 99", "4 5"}},
		{"redis 7.0", false, []string{"1 2 3 99", "1", "2", "3", "99", "4", "5"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := &killServer{multi: tt.multi, alive: map[int64]bool{1: true, 2: true, 3: true, 4: true, 5: true}}
			s := newFakeServer(t, respServer(k.reply))
			c := newTestClient(t, Config{Address: s.addr()})
			ctx := context.Background()
			n, err := c.Kill(ctx, 1, 2, 3, 99)
			if err != nil || n != 3 {
				t.Fatalf("Kill(1, 2, 3, 99) = %d, %v; want 3", n, err)
			}
			if n, err = c.Kill(ctx, 4, 5); err != nil || n != 2 {
				t.Fatalf("Kill(4, 5) = %d, %v; want 2", n, err)
			}
			k.mu.Lock()
			defer k.mu.Unlock()
			if diff := cmp.Diff(tt.want, k.kills); diff != "" {
				t.Errorf("CLIENT KILL ID commands (-want +got):\n%s", diff)
			}
			if len(k.alive) != 0 {
				t.Errorf("left alive: %v", k.alive)
			}
			if got := s.accepts.Load(); got != 1 {
				t.Errorf("%d connections, want 1 (a syntax error is not a connection failure)", got)
			}
		})
	}
}

// TestKillBatches: more ids than killBatch go in several commands of at
// most killBatch ids.
func TestKillBatches(t *testing.T) {
	k := &killServer{multi: true, alive: map[int64]bool{}}
	ids := make([]int64, killBatch+10)
	for i := range ids {
		ids[i] = int64(i + 1)
		k.alive[ids[i]] = true
	}
	s := newFakeServer(t, respServer(k.reply))
	c := newTestClient(t, Config{Address: s.addr()})
	n, err := c.Kill(context.Background(), ids...)
	if err != nil || n != len(ids) {
		t.Fatalf("Kill(%d ids) = %d, %v", len(ids), n, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	var sizes []int
	for _, cmd := range k.kills {
		sizes = append(sizes, len(strings.Fields(cmd)))
	}
	if !slices.Equal(sizes, []int{killBatch, 10}) {
		t.Errorf("ids per command %v, want [%d 10]", sizes, killBatch)
	}
}
