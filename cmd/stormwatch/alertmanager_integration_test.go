package main

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/amtest"
	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/testbin"
)

// TestAlertmanagerOutageDaemon: the daemon, a real Alertmanager and a
// stalled server in one namespace. Alertmanager is down for 30 s while
// the server's queue holds its clients: AcceptQueueStalled fires in the
// daemon, its POSTs fail and the daemon says so in its log. When
// Alertmanager is back the alert arrives as firing within seconds (the
// daemon's retry, not its resend a minute after the alert fired), and its
// resolution once the clients are gone. A daemon stopped in the middle of
// a second storm sends no resolution: Alertmanager keeps the alert active.
func TestAlertmanagerOutageDaemon(t *testing.T) {
	testbin.RequireTools(t)
	ns := netnstest.New(t)
	am := amtest.New(t, amtest.Options{Addr: "127.0.0.1:9093", Command: ns.Command, Dial: ns.DialContext})
	am.Start()
	d := startDaemon(t, ns, "", "--collect.interval=1s", "--alertmanager.url="+am.URL())

	const port = 7131
	var lfd int
	if err := ns.Do(func() (err error) {
		lfd, err = listen(unix.AF_INET, []byte{127, 0, 0, 1}, port, 128)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lfd)
	if err := unix.SetNonblock(lfd, true); err != nil {
		t.Fatal(err)
	}
	// storm puts five clients in the queue of a server that does not
	// accept. The stop it returns closes them and accepts what they left
	// queued (a closed client's connection stays queued until accepted).
	storm := func() (stop func()) {
		t.Helper()
		var fds []int
		if err := ns.Do(func() (err error) { fds, err = connectN(5, port); return err }); err != nil {
			closeAll(fds)
			t.Fatal(err)
		}
		return func() {
			closeAll(fds)
			for {
				fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
				if err != nil {
					return
				}
				unix.Close(fd)
			}
		}
	}
	const alert = "AcceptQueueStalled"
	labels := map[string]string{"addr": "127.0.0.1", "port": strconv.Itoa(port)}
	waitFor := func(what string, within time.Duration, ok func() bool) time.Time {
		t.Helper()
		deadline := time.Now().Add(within)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s; Alertmanager has %+v", what, within, am.Alerts())
			}
			time.Sleep(100 * time.Millisecond)
		}
		return time.Now()
	}
	inDaemon := func() bool {
		as, err := d.alerts()
		if err != nil {
			t.Fatal(err)
		}
		_, ok := firing(as, alert, labels)
		return ok
	}
	active := func() bool { a := am.Find(alert); return a != nil && a.Status.State == "active" }

	am.Stop()
	down := time.Now()
	stop := storm()
	fired := waitFor("alert firing in the daemon", 20*time.Second, inDaemon)
	for time.Since(down) < 30*time.Second {
		if !inDaemon() {
			t.Fatalf("%s stopped firing in the daemon during the storm", alert)
		}
		time.Sleep(time.Second)
	}
	logged := d.log.String()
	if !strings.Contains(logged, "alertmanager delivery failing") || !strings.Contains(logged, "connection refused") {
		t.Errorf("the daemon's log does not report the failing deliveries with their reason:\n%s", logged)
	}

	am.Start()
	up := time.Now()
	arrived := waitFor("firing alert after Alertmanager's return", 30*time.Second, active)
	// The resend would come a minute after the alert fired; the retries
	// back off to at most 10 s.
	if delay := arrived.Sub(up); delay > 15*time.Second {
		t.Errorf("%s arrived %s after Alertmanager was back, want within seconds", alert, delay.Round(time.Millisecond))
	}
	if a := am.Find(alert); a.Labels["port"] != labels["port"] || a.Labels["addr"] != labels["addr"] {
		t.Errorf("alert in Alertmanager %+v, want labels %v", a, labels)
	}
	t.Logf("down %s, %s fired %s into it; arrived as firing %s after Alertmanager was back (resend delay 1m)",
		up.Sub(down).Round(time.Second), alert, fired.Sub(down).Round(time.Second), arrived.Sub(up).Round(time.Millisecond))
	if !strings.Contains(d.log.String(), "alertmanager delivery recovered") {
		// The log line is written after the POST's answer: give it a moment.
		waitFor("recovery logged", 5*time.Second, func() bool { return strings.Contains(d.log.String(), "alertmanager delivery recovered") })
	}

	stop()
	ended := time.Now()
	resolved := waitFor("resolution after the storm", 30*time.Second, func() bool {
		a := am.Find(alert)
		return a == nil || !a.EndsAt.After(time.Now())
	})
	t.Logf("resolution arrived %s after the clients left (keep_firing_for 5s)", resolved.Sub(ended).Round(time.Millisecond))

	// A second storm, and the daemon stops in its middle.
	stop = storm()
	defer stop()
	waitFor("second firing alert", 30*time.Second, active)
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		d.done <- err // for the cleanup
		if err != nil {
			t.Errorf("daemon exited with %v after SIGTERM", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not exit within 10s of SIGTERM")
	}
	time.Sleep(2 * time.Second)
	if a := am.Find(alert); a == nil || a.Status.State != "active" || !a.EndsAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("after the daemon stopped Alertmanager has %+v, want %s still active (no resolution sent)", a, alert)
	}
}
