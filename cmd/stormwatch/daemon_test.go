package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stormwatch/stormwatch/alerts"
)

// TestRunConfigErrorOneLine: a config file with several problems is logged
// as one clean logfmt line (no literal \n inside the err value).
func TestRunConfigErrorOneLine(t *testing.T) {
	cfg := writeFile(t, t.TempDir(), "stormwatch.yml", "default_rules: maybe\ndisabled_rule: [x]\n")
	var out bytes.Buffer
	if code := run([]string{"run", "--config=" + cfg, "--web.listen-address=127.0.0.1:0"}, &out, &out); code != exitUnknown {
		t.Fatalf("exit %d:\n%s", code, out.String())
	}
	var line string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, "invalid configuration") {
			line = l
		}
	}
	want := `err="` + cfg + `:1:16: default_rules: \"maybe\" is not a boolean (true or false); ` +
		cfg + `:2:1: unknown field \"disabled_rule\"; did you mean \"disabled_rules\"?"`
	if !strings.HasSuffix(line, want) || strings.Contains(line, `\n`) {
		t.Errorf("log line\n%s\nwant one ending in\n%s", line, want)
	}
}

// TestLandingPageLinks follows every link of the landing page: none may
// lead nowhere.
func TestLandingPageLinks(t *testing.T) {
	c := newCLI(&bytes.Buffer{}, &bytes.Buffer{})
	if _, err := c.parse([]string{"run"}); err != nil {
		t.Fatal(err)
	}
	engine := alerts.NewEngine(alerts.DefaultRules(), alerts.Options{})
	h, err := newHandler(prometheus.NewRegistry(), c.daemon, engine, &reloader{engine: engine})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w
	}
	page := get("/")
	if page.Code != http.StatusOK {
		t.Fatalf("GET / = %d", page.Code)
	}
	links := regexp.MustCompile(`href="([^"#]+)"`).FindAllStringSubmatch(page.Body.String(), -1)
	if len(links) == 0 {
		t.Fatal("the landing page has no link")
	}
	for _, l := range links {
		if strings.HasPrefix(l[1], "http") {
			continue // outside the daemon
		}
		if code := get(l[1]).Code; code != http.StatusOK {
			t.Errorf("link %s: %d", l[1], code)
		}
	}
}
