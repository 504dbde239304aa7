// Command runner runs the unitcheck checks inside the container that
// deploy's TestUnitInContainer boots, as the oneshot unit the test installs
// there. It writes the report, its log and the unit's journal into
// -results and ends the container with `systemctl exit N`, N the number of
// failed checks, which systemd-nspawn returns as its exit status.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/stormwatch/stormwatch/deploy/internal/unitcheck"
)

func main() {
	deb := flag.String("deb", "", "the stormwatch .deb to install")
	dropIn := flag.String("dropin", "", "a drop-in to install beside the packaged unit (a mutation), if the file exists")
	results := flag.String("results", "", "directory for the report, the log and the journal")
	exit := flag.Bool("exit", true, "end the container with systemctl exit N")
	flag.Parse()
	if *deb == "" || *results == "" {
		fmt.Fprintln(os.Stderr, "runner: -deb and -results are required")
		os.Exit(2)
	}
	os.Exit(run(*deb, *dropIn, *results, *exit))
}

func run(deb, dropIn, results string, exit bool) int {
	logFile, err := os.Create(filepath.Join(results, unitcheck.LogFile))
	if err != nil {
		fmt.Fprintln(os.Stderr, "runner:", err)
		return 2
	}
	defer logFile.Close()
	r := &unitcheck.Runner{Deb: deb, Log: logFile}
	if dropIn != "" {
		if b, err := os.ReadFile(dropIn); err == nil {
			r.DropIn = string(b)
		} else if !os.IsNotExist(err) {
			fmt.Fprintln(logFile, "runner:", err)
			return 2
		}
	}
	// Bounded well below the runner unit's TimeoutStartSec.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	rep := r.Run(ctx)

	journal, err := exec.Command("journalctl", "--no-pager", "-o", "short-monotonic", "-u", unitcheck.Unit).CombinedOutput()
	if err != nil {
		journal = fmt.Appendf(journal, "\njournalctl: %v\n", err)
	}
	if err := os.WriteFile(filepath.Join(results, unitcheck.JournalFile), journal, 0o644); err != nil {
		fmt.Fprintln(logFile, "runner:", err)
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err == nil {
		err = os.WriteFile(filepath.Join(results, unitcheck.ReportFile), b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(logFile, "runner:", err)
		return 2
	}
	failed := min(rep.Failed(), unitcheck.ExitRunnerFailed-1)
	fmt.Fprintf(logFile, "%d of %d checks failed\n", failed, len(rep.Checks))
	if !exit {
		return failed
	}
	logFile.Close()
	systemctl, err := exec.LookPath("systemctl")
	if err == nil {
		err = syscall.Exec(systemctl, []string{"systemctl", "exit", strconv.Itoa(failed)}, os.Environ())
	}
	fmt.Fprintln(os.Stderr, "runner: systemctl exit:", err)
	return 2
}
