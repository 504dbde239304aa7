package deploy

import (
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/stormwatch/stormwatch/headroom"
	"github.com/stormwatch/stormwatch/internal/testenv"
)

const (
	analysisTemplatePath = "rollouts/analysis-template.yaml"
	flaggerCanaryPath    = "rollouts/flagger-canary.yaml"
	staggeredRestartPath = "rollouts/staggered-restart.sh"
)

// analysisTemplate is the part of an Argo Rollouts AnalysisTemplate the
// tests read.
type analysisTemplate struct {
	Kind string `yaml:"kind"`
	Spec struct {
		Args []struct {
			Name  string  `yaml:"name"`
			Value *string `yaml:"value"`
		} `yaml:"args"`
		Metrics []struct {
			Name             string `yaml:"name"`
			SuccessCondition string `yaml:"successCondition"`
			FailureCondition string `yaml:"failureCondition"`
			Provider         struct {
				Web *struct {
					URL      string `yaml:"url"`
					JSONPath string `yaml:"jsonPath"`
				} `yaml:"web"`
			} `yaml:"provider"`
		} `yaml:"metrics"`
	} `yaml:"spec"`
}

// TestAnalysisTemplate: the shipped template asks /api/v1/headroom with
// a query the daemon accepts, without ?fail= (Argo counts a non-2xx
// answer as an error, not a failure), reads {$.ok} and succeeds on true.
// cmd/stormwatch's TestHeadroomDaemon evaluates it against a live answer.
func TestAnalysisTemplate(t *testing.T) {
	b, err := os.ReadFile(analysisTemplatePath)
	if err != nil {
		t.Fatal(err)
	}
	var at analysisTemplate
	if err := yaml.Unmarshal(b, &at); err != nil {
		t.Fatal(err)
	}
	if at.Kind != "AnalysisTemplate" || len(at.Spec.Metrics) != 1 || at.Spec.Metrics[0].Provider.Web == nil {
		t.Fatalf("not an AnalysisTemplate with one web metric: %+v", at)
	}
	m := at.Spec.Metrics[0]
	if m.Provider.Web.JSONPath != "{$.ok}" || m.SuccessCondition != "result == true" || m.FailureCondition != "" {
		t.Errorf("jsonPath %q, successCondition %q, failureCondition %q", m.Provider.Web.JSONPath, m.SuccessCondition, m.FailureCondition)
	}
	// The URL with the args' defaults (and a host) filled in.
	raw := m.Provider.Web.URL
	for _, a := range at.Spec.Args {
		v := "valkey-0.example"
		if a.Value != nil {
			v = *a.Value
		}
		raw = strings.ReplaceAll(raw, "{{args."+a.Name+"}}", v)
	}
	checkHeadroomURL(t, raw, false)
}

// TestFlaggerCanary: every webhook asks /api/v1/headroom with ?fail=503,
// since Flagger judges by the status alone.
func TestFlaggerCanary(t *testing.T) {
	b, err := os.ReadFile(flaggerCanaryPath)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Analysis struct {
				Webhooks []struct {
					Name string `yaml:"name"`
					Type string `yaml:"type"`
					URL  string `yaml:"url"`
				} `yaml:"webhooks"`
			} `yaml:"analysis"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if c.Kind != "Canary" || len(c.Spec.Analysis.Webhooks) == 0 {
		t.Fatalf("not a Canary with webhooks: %+v", c)
	}
	for _, w := range c.Spec.Analysis.Webhooks {
		if w.Type != "confirm-traffic-increase" && w.Type != "rollout" && w.Type != "pre-rollout" {
			t.Errorf("webhook %s: type %q does not gate traffic", w.Name, w.Type)
		}
		checkHeadroomURL(t, w.URL, true)
	}
}

// checkHeadroomURL wants raw to ask the headroom path with a query the
// daemon accepts, with ?fail=503 or without any fail.
func checkHeadroomURL(t *testing.T, raw string, fail bool) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	if u.Path != headroom.Path || u.Port() != "9955" {
		t.Errorf("%s: path %q port %q, want %s on 9955", raw, u.Path, u.Port(), headroom.Path)
	}
	req, err := headroom.ParseQuery(u.Query(), headroom.DefaultOptions())
	if err != nil {
		t.Errorf("%s: the daemon refuses the query: %v", raw, err)
	}
	if want := map[bool]int{true: 503, false: 0}[fail]; req.Fail != want {
		t.Errorf("%s: fail=%d, want %d", raw, req.Fail, want)
	}
	if len(req.Options.Ports) == 0 {
		t.Errorf("%s: no port: every listener of the host would count", raw)
	}
}

// fakeBin writes an executable shell script named name into dir.
func fakeBin(t *testing.T, dir, name, script string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestStaggeredRestart runs the script against three hosts with fakes of
// stormwatch, ssh and the restart, recording each call: every host is
// waited for, drained paced by the two others, restarted and waited for
// again, in order; a drain that fails stops the script before the
// restart, with the drain's exit code.
func TestStaggeredRestart(t *testing.T) {
	testenv.Tool(t, "dash")
	if out, err := exec.Command(testenv.Tool(t, "shellcheck"), "-s", "sh", staggeredRestartPath).CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
	script, err := filepath.Abs(staggeredRestartPath)
	if err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, failDrainOn string) ([]string, int) {
		dir := t.TempDir()
		log := filepath.Join(dir, "calls")
		// Each call is one line, its arguments separated by " | ", so that
		// a URL split or re-read by a shell shows.
		fakeBin(t, dir, "stormwatch", `
line="stormwatch"; for a in "$@"; do line="$line | $a"; done
echo "$line" >>"$CALLS"
if [ "$1" = drain ] && [ "$FAIL_DRAIN_ON" = "$THIS_HOST" ]; then exit 1; fi
exit 0
`)
		// ssh HOST COMMAND...: runs the command here, as a remote shell
		// would read it.
		fakeBin(t, dir, "ssh", `
host=$1; shift
echo "ssh $host" >>"$CALLS"
THIS_HOST=$host; export THIS_HOST
exec sh -c "$*"
`)
		fakeBin(t, dir, "restart-valkey", `echo "restart $THIS_HOST" >>"$CALLS"`)
		cmd := exec.Command("dash", script, "a", "b", "c")
		cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "CALLS="+log,
			"FAIL_DRAIN_ON="+failDrainOn, "RESTART=restart-valkey", "WAIT_TIMEOUT=1m", "BATCH=100", "EVERY=1s")
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		b, err := os.ReadFile(log)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		t.Logf("script output:\n%s", out)
		return strings.Split(strings.TrimSpace(string(b)), "\n"), code
	}
	url := func(h string) string {
		return "http://" + h + ":9955/api/v1/headroom?min=0.3&port=6379"
	}
	waitAll := "stormwatch | headroom | --wait | --timeout | 1m | --interval | 2s | --url | " + url("a") + " | --url | " + url("b") + " | --url | " + url("c")
	drain := func(h string, others ...string) []string {
		line := "stormwatch | drain | --port | 6379 | --method | valkey | --batch | 100 | --every | 1s | --min-headroom | 0.3 | --timeout | 1m"
		for _, o := range others {
			line += " | --pace-by | " + url(o)
		}
		return []string{"ssh " + h, line}
	}
	restart := func(h string) []string { return []string{"ssh " + h, "restart " + h} }

	t.Run("all", func(t *testing.T) {
		calls, code := run(t, "")
		var want []string
		for _, h := range [][]string{{"a", "b", "c"}, {"b", "a", "c"}, {"c", "a", "b"}} {
			want = append(want, waitAll)
			want = append(want, drain(h[0], h[1], h[2])...)
			want = append(want, restart(h[0])...)
			want = append(want, waitAll)
		}
		if code != 0 {
			t.Errorf("exit %d, want 0", code)
		}
		if diff := cmp.Diff(want, calls); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
	})
	t.Run("drain of b fails", func(t *testing.T) {
		calls, code := run(t, "b")
		var want []string
		want = append(want, waitAll)
		want = append(want, drain("a", "b", "c")...)
		want = append(want, restart("a")...)
		want = append(want, waitAll, waitAll)
		want = append(want, drain("b", "a", "c")...)
		if code != 1 {
			t.Errorf("exit %d, want the drain's 1", code)
		}
		if diff := cmp.Diff(want, calls); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
	})
}
