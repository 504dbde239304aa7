package main

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/model"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/diagnose"
	"github.com/stormwatch/stormwatch/headroom"
	"github.com/stormwatch/stormwatch/metrics"
)

// The tests below fail when the README (or the man page) falls behind the
// code: a flag, a built-in rule, an exported metric, a command or an HTTP
// endpoint that the code has and the documentation does not mention. Each
// failure names what is missing and where it should be written.

const (
	readmePath        = "../../README.md"
	manPagePath       = "../../deploy/stormwatch.1.in"
	exampleConfigPath = "../../deploy/stormwatch.yml"
)

// readmeCommandSections says under which README heading each command's
// flags are documented (a heading containing this text, down to the next
// heading of the same or a higher level).
var readmeCommandSections = map[string]string{
	"run":      "## Running the daemon",
	"check":    "## `stormwatch check`",
	"rules":    "### Your own rules",
	"drain":    "## `stormwatch drain`",
	"headroom": "## Headroom",
}

// readme returns README.md as lines.
func readme(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatalf("reading the README: %v", err)
	}
	return strings.Split(string(data), "\n")
}

// readmeSection returns the lines under the heading that starts with
// heading (its level given by its leading #s), down to the next heading of
// the same or a higher level. Lines inside fenced code blocks are never
// taken for headings.
func readmeSection(t *testing.T, lines []string, heading string) []string {
	t.Helper()
	level := strings.IndexFunc(heading, func(r rune) bool { return r != '#' })
	start := -1
	inCode := false
	for i, l := range lines {
		if strings.HasPrefix(l, "```") {
			inCode = !inCode
			continue
		}
		if inCode || !strings.HasPrefix(l, "#") {
			continue
		}
		lv := strings.IndexFunc(l, func(r rune) bool { return r != '#' })
		if start < 0 {
			if lv == level && strings.HasPrefix(l, heading) {
				start = i
			}
			continue
		}
		if lv <= level {
			return lines[start:i]
		}
	}
	if start < 0 {
		t.Fatalf("the README has no heading starting with %q", heading)
	}
	return lines[start:]
}

// flagTokenRE finds flags as the README writes them: --name, --[no-]name,
// --name=value (the value is not part of the name).
var flagTokenRE = regexp.MustCompile(`--(?:\[no-\])?([a-z][a-z0-9.-]*[a-z0-9])`)

// flagsIn returns the flag names mentioned in lines.
func flagsIn(lines []string) map[string]bool {
	out := map[string]bool{}
	for _, l := range lines {
		for _, m := range flagTokenRE.FindAllStringSubmatch(l, -1) {
			out[strings.TrimPrefix(m[1], "no-")] = true
			out[m[1]] = true
		}
	}
	return out
}

// flagRow returns the table row of lines whose first cell names flag
// --name (`| `--name` | default | meaning |`, or `| `--name`, `-q` | …`),
// "" when there is none.
func flagRow(lines []string, name string) string {
	for _, l := range lines {
		cells := strings.Split(l, "|")
		if !strings.HasPrefix(strings.TrimSpace(l), "|") || len(cells) < 3 {
			continue
		}
		for _, m := range flagTokenRE.FindAllStringSubmatch(cells[1], -1) {
			if m[1] == name {
				return l
			}
		}
	}
	return ""
}

// TestDocsREADMEFlags: every flag of every command (from the kingpin
// application the binary parses with) has a row in a flags table under
// that command's README section, which gives its default where it has
// one; the application's own flags (--log.level, --help, …) are mentioned
// anywhere.
func TestDocsREADMEFlags(t *testing.T) {
	lines := readme(t)
	all := flagsIn(lines)
	m := newCLI(io.Discard, io.Discard).app.Model()
	for _, f := range m.Flags {
		if f.Hidden {
			continue
		}
		if !all[f.Name] {
			t.Errorf("README: flag --%s (of every command) is not mentioned", f.Name)
		}
	}
	seen := map[string]bool{}
	for _, c := range m.Commands {
		if c.Hidden || c.Name == "help" {
			continue
		}
		seen[c.Name] = true
		heading, ok := readmeCommandSections[c.Name]
		if !ok {
			t.Errorf("command %q has no README section: add one and name its heading in readmeCommandSections", c.Name)
			continue
		}
		section := readmeSection(t, lines, heading)
		for _, f := range c.Flags {
			if f.Hidden {
				continue
			}
			row := flagRow(section, f.Name)
			if row == "" {
				t.Errorf("README: flag --%s of stormwatch %s has no row (| `--%s` | default | meaning |) in a table under %q", f.Name, c.Name, f.Name, heading)
				continue
			}
			def := strings.Join(f.Default, ",")
			if def == "" || f.IsBoolFlag() && def == "false" {
				continue
			}
			if !strings.Contains(row, "`"+def+"`") {
				t.Errorf("README: under %q, the row of --%s does not give its default `%s`:\n%s", heading, f.Name, def, row)
			}
		}
	}
	for c := range readmeCommandSections {
		if !seen[c] {
			t.Errorf("readmeCommandSections names command %q, which the application does not have", c)
		}
	}
	if len(seen) < 5 {
		t.Errorf("found only the commands %v in the application model", seen)
	}
}

// TestDocsREADMERules: every built-in rule has a row in the README's rules
// table, `| `Name` | scope | severities | for | …`, naming its scope, every
// severity it is defined with and every `for` ("none" for a rule without
// one).
func TestDocsREADMERules(t *testing.T) {
	lines := readme(t)
	type rule struct {
		scope      string
		severities []string
		fors       []string
	}
	rules := map[string]*rule{}
	var names []string
	for _, r := range alerts.DefaultRules() {
		x, ok := rules[r.Name]
		if !ok {
			x = &rule{scope: string(r.Scope)}
			rules[r.Name] = x
			names = append(names, r.Name)
		}
		if s := string(r.Severity); !slices.Contains(x.severities, s) {
			x.severities = append(x.severities, s)
		}
		f := "none"
		if r.For > 0 {
			f = model.Duration(r.For).String()
		}
		if !slices.Contains(x.fors, f) {
			x.fors = append(x.fors, f)
		}
	}
	if len(names) < 20 {
		t.Fatalf("only %d built-in rules: %v", len(names), names)
	}
	for _, name := range names {
		var row string
		for _, l := range lines {
			if strings.HasPrefix(l, "| `"+name+"` |") {
				row = l
				break
			}
		}
		if row == "" {
			t.Errorf("README: built-in rule %s has no row (| `%s` | scope | severity | for | fires when | advice |) in the rules table", name, name)
			continue
		}
		cells := strings.Split(row, "|")
		if len(cells) < 7 {
			t.Errorf("README: the row of %s has %d cells, want name, scope, severity, for, when, advice:\n%s", name, len(cells)-2, row)
			continue
		}
		if got := strings.TrimSpace(cells[2]); got != rules[name].scope {
			t.Errorf("README: rule %s has scope %q in its row, the rule's is %q", name, got, rules[name].scope)
		}
		for _, s := range rules[name].severities {
			if !strings.Contains(cells[3], s) {
				t.Errorf("README: the row of rule %s does not name its severity %q (severity cell: %q)", name, s, strings.TrimSpace(cells[3]))
			}
		}
		for _, f := range rules[name].fors {
			if !regexp.MustCompile(`(^|[^0-9a-z])` + regexp.QuoteMeta(f) + `($|[^0-9a-z])`).MatchString(cells[4]) {
				t.Errorf("README: the row of rule %s does not give its for %q (for cell: %q)", name, f, strings.TrimSpace(cells[4]))
			}
		}
	}
}

// descNameRE reads the name out of prometheus.Desc.String().
var descNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

// descNames returns the names of the descriptors c describes.
func descNames(t *testing.T, c prometheus.Collector) []string {
	t.Helper()
	ch := make(chan *prometheus.Desc, 256)
	go func() { c.Describe(ch); close(ch) }()
	var out []string
	for d := range ch {
		m := descNameRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the metric name out of %s", d)
		}
		out = append(out, m[1])
	}
	return out
}

// sourceDescNames returns the metric names given as string literals to
// prometheus.NewDesc in the non-test Go files of dir: a collector the
// daemon registers that descNames' list below does not know is caught
// here.
func sourceDescNames(t *testing.T, dir string) []string {
	return sourceStringArgs(t, dir, func(name string, args int) bool { return name == "NewDesc" && args > 0 })
}

// sourceStringArgs returns the string literals given as the first
// argument to the method or package function calls in the non-test Go
// files of dir that match reports true for (by its name and number of
// arguments).
func sourceStringArgs(t *testing.T, dir string, match func(name string, args int) bool) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !match(sel.Sel.Name, len(call.Args)) {
				return true
			}
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					out = append(out, s)
				}
			}
			return true
		})
	}
	return out
}

// goldenMetricNames returns the metric families of the /metrics golden
// files (metrics/testdata/*.prom).
func goldenMetricNames(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../metrics/testdata/*.prom")
	if err != nil || len(files) == 0 {
		t.Fatalf("no /metrics golden files under metrics/testdata: %v", err)
	}
	var out []string
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
				out = append(out, f[2])
			}
		}
	}
	return out
}

// TestDocsREADMEMetrics: every series the daemon exports is in the
// README's metrics table (`name` without the stormwatch_ prefix). The
// names come without a kernel: from the descriptors of the collectors
// runDaemon registers (the declarations' exporter, headroom, the reloader,
// the sample loop, the notifier), from every prometheus.NewDesc in this
// package's source (a collector added later), from the /metrics golden
// files, and stormwatch_alerts, whose exporter is unchecked (its labels
// vary with the rules, so it describes nothing). The process and Go
// collectors' standard series are documented as a group.
func TestDocsREADMEMetrics(t *testing.T) {
	lines := readmeSection(t, readme(t), "## Metrics")
	var names []string
	names = append(names, descNames(t, metrics.NewExporter(collector.DefaultSchema(), func() *collector.Snapshot { return nil }, metrics.BuildInfo{}))...)
	names = append(names, descNames(t, metrics.NewHeadroomExporter(nil, time.Second))...)
	names = append(names, descNames(t, &reloader{})...)
	names = append(names, descNames(t, &sampleLoop{})...)
	names = append(names, descNames(t, notifierCollector{})...)
	names = append(names, sourceDescNames(t, ".")...)
	names = append(names, goldenMetricNames(t)...)
	names = append(names, "stormwatch_alerts")
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) < 50 {
		t.Fatalf("found only %d metric names: %v", len(names), names)
	}
	text := strings.Join(lines, "\n")
	for _, n := range names {
		short, ok := strings.CutPrefix(n, "stormwatch_")
		if !ok {
			t.Errorf("metric %s does not start with stormwatch_", n)
			continue
		}
		if !strings.Contains(text, "`"+short+"`") && !strings.Contains(text, "`"+n+"`") {
			t.Errorf("README: metric %s is not in the metrics table (write `%s` under \"## Metrics\")", n, short)
		}
	}

	// The series of the registry as the daemon serves it: the process and
	// Go collectors (documented as groups) and what the HTTP handler adds
	// (promhttp's own counter), by their full names.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "stormwatch"}), collectors.NewGoCollector())
	c := newCLI(io.Discard, io.Discard)
	if _, err := c.parse([]string{"run"}); err != nil {
		t.Fatal(err)
	}
	engine := alerts.NewEngine(alerts.DefaultRules(), alerts.Options{})
	rl := &reloader{collect: &c.daemon.collect, engine: engine,
		history: collector.NewHistory(c.daemon.collect.retention(alerts.DefaultRules())),
		logger:  slog.New(slog.DiscardHandler)}
	if _, err := newHandler(reg, c.daemon, engine, rl); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string]string{"stormwatch_process_": "`stormwatch_process_*`", "process_": "`stormwatch_process_*`", "go_": "`go_*`"}
	var handlerSeries int
	for _, mf := range families {
		n := mf.GetName()
		group := ""
		for prefix, g := range groups {
			if strings.HasPrefix(n, prefix) {
				group = g
			}
		}
		switch {
		case group != "":
			if !strings.Contains(text, group) {
				t.Errorf("README: the series %s are not mentioned as a group (write %s under \"## Metrics\")", n, group)
			}
		case !strings.Contains(text, "`"+n) && !strings.Contains(text, "`"+strings.TrimPrefix(n, "stormwatch_")+"`"):
			t.Errorf("README: metric %s, which the daemon's handler serves, is not under \"## Metrics\"", n)
		default:
			handlerSeries++
		}
	}
	if handlerSeries == 0 {
		t.Errorf("the daemon's registry served no series besides the process and Go collectors': %d families", len(families))
	}
}

// endpoints are the daemon's HTTP endpoints as the docs write them, each
// with the method that proves it is served.
var endpoints = []struct{ method, path string }{
	{http.MethodGet, "/metrics"},
	{http.MethodGet, "/api/v1/alerts"},
	{http.MethodGet, "/api/v1/headroom"},
	{http.MethodPost, "/-/reload"},
	{http.MethodGet, "/-/healthy"},
	{http.MethodGet, "/"},
}

// TestDocsEndpoints: the endpoints the docs list are the daemon's (each
// answers something other than 404 on a handler built as the daemon
// builds it, --web.enable-lifecycle set), every link of the landing page
// is among them, and the README and the man page list each one.
func TestDocsEndpoints(t *testing.T) {
	c := newCLI(io.Discard, io.Discard)
	if _, err := c.parse([]string{"run", "--web.enable-lifecycle"}); err != nil {
		t.Fatal(err)
	}
	engine := alerts.NewEngine(alerts.DefaultRules(), alerts.Options{})
	rl := &reloader{collect: &c.daemon.collect, engine: engine,
		history: collector.NewHistory(c.daemon.collect.retention(alerts.DefaultRules())),
		logger:  slog.New(slog.DiscardHandler)}
	h, err := newHandler(prometheus.NewRegistry(), c.daemon, engine, rl)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, e := range endpoints {
		listed[e.path] = true
	}
	for _, p := range sourceMuxPatterns(t, ".") {
		method, path, ok := strings.Cut(p, " ")
		if !ok {
			method, path = "", p
		}
		if !listed[path] {
			t.Errorf("the daemon registers the handler pattern %q, whose path is not in the endpoints list (and so not checked in the docs): add it", p)
			continue
		}
		if method != "" && !slices.ContainsFunc(endpoints, func(e struct{ method, path string }) bool { return e.method == method && e.path == path }) {
			t.Errorf("the daemon serves %s %s, which the endpoints list has with another method", method, path)
		}
	}
	for _, e := range endpoints {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(e.method, e.path, nil))
		if w.Code == http.StatusNotFound {
			t.Errorf("%s %s: 404: the daemon does not serve it; take it out of the docs (and this list)", e.method, e.path)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	for _, l := range regexp.MustCompile(`href="(/[^"#?]*)"`).FindAllStringSubmatch(w.Body.String(), -1) {
		if !listed[l[1]] {
			t.Errorf("the landing page links %s, which the endpoints list (and so the docs) lack", l[1])
		}
	}

	text := strings.Join(readmeSection(t, readme(t), "## HTTP endpoints"), "\n")
	_, man, _ := strings.Cut(manPage(t), ".SH HTTP ENDPOINTS")
	man, _, _ = strings.Cut(man, ".SH FILES")
	for _, e := range endpoints {
		want := e.method + " " + e.path
		if !strings.Contains(text, "`"+want+"`") {
			t.Errorf("README: endpoint %s is not listed under \"## HTTP endpoints\" (as `%s`)", want, want)
		}
		if !strings.Contains(man, ".B "+want+"\n") {
			t.Errorf("deploy/stormwatch.1.in: endpoint %s is not in HTTP ENDPOINTS", want)
		}
	}
}

// manPage returns the hand-written source of stormwatch(1), with troff's
// \- read as -.
func manPage(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(manPagePath)
	if err != nil {
		t.Fatalf("reading the man page source: %v", err)
	}
	return strings.ReplaceAll(string(data), `\-`, "-")
}

// TestDocsManPageCommands: the man page's SYNOPSIS and EXIT STATUS, which
// are hand-written, name every command; the README shows each as
// `stormwatch NAME`.
func TestDocsManPageCommands(t *testing.T) {
	man := manPage(t)
	synopsis, _, _ := strings.Cut(man, ".SH DESCRIPTION")
	_, exit, _ := strings.Cut(man, ".SH EXIT STATUS")
	exit, _, _ = strings.Cut(exit, ".SH ENVIRONMENT")
	text := strings.Join(readme(t), "\n")
	for _, c := range newCLI(io.Discard, io.Discard).app.Model().Commands {
		if c.Hidden || c.Name == "help" {
			continue
		}
		inSynopsis := strings.Contains(synopsis, ".B stormwatch "+c.Name) ||
			c.Default && strings.Contains(synopsis, ".RB [ "+c.Name+" ]")
		if !inSynopsis {
			t.Errorf("deploy/stormwatch.1.in: command %s is not in the SYNOPSIS (.B stormwatch %s)", c.Name, c.Name)
		}
		if !strings.Contains(exit, ".B stormwatch "+c.Name) {
			t.Errorf("deploy/stormwatch.1.in: command %s has no exit status under EXIT STATUS (.B stormwatch %s)", c.Name, c.Name)
		}
		if !strings.Contains(text, "stormwatch "+c.Name) {
			t.Errorf("README: command %s is never shown as `stormwatch %s`", c.Name, c.Name)
		}
	}
}

// sourceMuxPatterns returns the patterns given as string literals to a
// Handle or HandleFunc call in the non-test Go files of dir: an endpoint
// the daemon adds later is caught here.
func sourceMuxPatterns(t *testing.T, dir string) []string {
	t.Helper()
	out := sourceStringArgs(t, dir, func(name string, args int) bool {
		return (name == "Handle" || name == "HandleFunc") && args == 2
	})
	if len(out) < 3 {
		t.Fatalf("found only the handler patterns %q in %s", out, dir)
	}
	return out
}

// fieldNames returns the names a struct type's encoding gives its fields
// (the tag's name, for tag "json" or "yaml"), walking into fields of
// struct, pointer, slice and map types, each with its path of parent
// names ("valkey.targets.address").
func fieldNames(typ reflect.Type, tag string) [][]string {
	var out [][]string
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type, parent []string)
	walk = func(t reflect.Type, parent []string) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] || t.PkgPath() == "time" {
			return
		}
		seen[t] = true
		defer delete(seen, t)
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get(tag), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			path := append(slices.Clone(parent), name)
			out = append(out, path)
			walk(f.Type, path)
		}
	}
	walk(typ, nil)
	return out
}

// keyMentioned reports whether text shows the key name in backquotes, on
// its own or at the end of a dotted path (`valkey.targets[]`,
// `items[].clients`, `tls`).
func keyMentioned(text, name string) bool {
	re := regexp.MustCompile("`(?:[a-z0-9_]+(?:\\[\\])?\\.)*" + regexp.QuoteMeta(name) + "(?:\\[\\])?`")
	return re.MatchString(text)
}

// TestDocsConfigKeys: every key of the config file (walked from the type
// it is decoded into) is in the README's config table, and in the example
// config deploy/stormwatch.yml, which loads with the daemon's loader.
func TestDocsConfigKeys(t *testing.T) {
	section := strings.Join(readmeSection(t, readme(t), "### Your own rules"), "\n")
	example, err := os.ReadFile(exampleConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	keys := fieldNames(reflect.TypeFor[fileConfig](), "yaml")
	if len(keys) < 20 {
		t.Fatalf("found only %d config keys: %v", len(keys), keys)
	}
	for _, k := range keys {
		name := k[len(k)-1]
		if !keyMentioned(section, name) {
			t.Errorf("README: config key %s is not under \"### Your own rules and the config file\" (as `%s`)", strings.Join(k, "."), name)
		}
		if !regexp.MustCompile(`(?m)^[#\s-]*` + regexp.QuoteMeta(name) + `:`).Match(example) {
			t.Errorf("deploy/stormwatch.yml: config key %s is not shown (as %q, commented or not)", strings.Join(k, "."), name+":")
		}
	}
	if _, err := loadConfig(exampleConfigPath); err != nil {
		t.Errorf("deploy/stormwatch.yml does not load: %v", err)
	}
}

// TestDocsJSONFields: every field of the JSON that check and headroom
// print (walked from the types they are encoded from) is in the README,
// under the command's section.
func TestDocsJSONFields(t *testing.T) {
	lines := readme(t)
	for _, c := range []struct {
		heading string
		typ     reflect.Type
	}{
		{"## `stormwatch check`", reflect.TypeFor[diagnose.Report]()},
		{"## Headroom", reflect.TypeFor[headroom.Report]()},
		{"## Headroom", reflect.TypeFor[headroomOutput]()},
	} {
		section := strings.Join(readmeSection(t, lines, c.heading), "\n")
		fields := fieldNames(c.typ, "json")
		if len(fields) < 5 {
			t.Fatalf("found only the JSON fields %v in %v", fields, c.typ)
		}
		for _, f := range fields {
			if !keyMentioned(section, f[len(f)-1]) {
				t.Errorf("README: JSON field %s of %v is not under %q (as `%s`)", strings.Join(f, "."), c.typ, c.heading, f[len(f)-1])
			}
		}
	}
}
