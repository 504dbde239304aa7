package unitcheck

// The checks, in the order the runner runs them.
const (
	CheckStart     = "start"
	CheckIdentity  = "identity"
	CheckSources   = "sources"
	CheckReload    = "reload"
	CheckWatchdog  = "watchdog"
	CheckPortTaken = "port-taken"
)

// Checks lists every check in the order they run.
var Checks = []string{CheckStart, CheckIdentity, CheckSources, CheckReload, CheckWatchdog, CheckPortTaken}

// Exit statuses of the container (nspawn's exit status) besides the
// number of failed checks.
const (
	// ExitRunnerFailed: the runner did not finish (crashed or timed out);
	// the runner unit's FailureActionExitStatus.
	ExitRunnerFailed = 100
)

// ReportFile is the report's name in the results directory; LogFile and
// JournalFile hold the runner's log and the unit's journal.
const (
	ReportFile  = "report.json"
	LogFile     = "runner.log"
	JournalFile = "journal.txt"
)

// Report is what the runner found.
type Report struct {
	Checks []Result `json:"checks"`
	// Notes are facts the checks could not establish on this host, said
	// instead of pretended (for example a resource limit not enforced).
	Notes []string `json:"notes,omitempty"`
}

// Result is one check's outcome.
type Result struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Detail says what was measured, or why the check failed.
	Detail  string  `json:"detail"`
	Seconds float64 `json:"seconds"` // how long the check took
}

// Failed returns the number of checks that failed.
func (r Report) Failed() int {
	n := 0
	for _, c := range r.Checks {
		if !c.OK {
			n++
		}
	}
	return n
}

// Mutation is a drop-in that removes the precondition of the checks it
// breaks; the runner installs it beside the packaged unit before enabling
// it.
type Mutation struct {
	Name   string
	Breaks []string // the checks that must fail with it
	Why    string   // the precondition it removes
	DropIn string   // the drop-in file's content
}

// Mutations are the negative runs: each must make its Breaks checks fail.
var Mutations = []Mutation{
	{
		// (NotifyAccess=none would not do: systemd turns it into main
		// for Type=notify.)
		Name:   "no-af-unix",
		Breaks: []string{CheckStart},
		Why:    "without AF_UNIX in RestrictAddressFamilies the daemon cannot send READY=1 (sd_notify), so the start never completes",
		DropIn: "[Service]\nRestrictAddressFamilies=\nRestrictAddressFamilies=AF_NETLINK AF_INET AF_INET6\nTimeoutStartSec=20s\n",
	},
	{
		Name:   "no-dynamic-user",
		Breaks: []string{CheckIdentity},
		Why:    "without DynamicUser the daemon runs as root",
		DropIn: "[Service]\nDynamicUser=no\n",
	},
	{
		Name:   "no-ambient-caps",
		Breaks: []string{CheckIdentity, CheckSources},
		Why:    "without AmbientCapabilities the daemon has no CAP_NET_ADMIN, and ctnetlink refuses the conntrack statistics",
		DropIn: "[Service]\nAmbientCapabilities=\n",
	},
	{
		Name:   "no-af-netlink",
		Breaks: []string{CheckSources},
		Why:    "without AF_NETLINK in RestrictAddressFamilies the sock_diag dump and ctnetlink are refused",
		DropIn: "[Service]\nRestrictAddressFamilies=\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n",
	},
	{
		Name:   "reload-noop",
		Breaks: []string{CheckReload},
		Why:    "ExecReload does not signal the daemon",
		DropIn: "[Service]\nExecReload=\nExecReload=/bin/true\n",
	},
	{
		Name:   "no-watchdog",
		Breaks: []string{CheckWatchdog},
		Why:    "without WatchdogSec a hung daemon is never restarted",
		DropIn: "[Service]\nWatchdogSec=0\n",
	},
	{
		Name:   "type-simple",
		Breaks: []string{CheckPortTaken},
		Why:    "with Type=simple systemd calls the daemon started before it has bound its port",
		DropIn: "[Service]\nType=simple\n",
	},
}

// MutationByName returns the mutation called name.
func MutationByName(name string) (Mutation, bool) {
	for _, m := range Mutations {
		if m.Name == name {
			return m, true
		}
	}
	return Mutation{}, false
}
