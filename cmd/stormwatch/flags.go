package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	str2duration "github.com/xhit/go-str2duration/v2"

	"github.com/stormwatch/stormwatch/collector"
)

// Every flag error names the flag, the bad value and what is accepted:
//
//	--port: "abc" is not a port (1-65535)
//	--window: "-1s" is not a duration ≥ 0 (e.g. 2s)
//
// Values are checked as kingpin parses them, by the kingpin.Values below;
// normalizeArgs and explainParseError make kingpin's own errors say as much
// (a value starting with "-", a bool flag given a value, an unknown flag or
// command).

// flagError is a bad flag value or a misused flag.
type flagError struct {
	flag string // "--window"
	msg  string // `"-1s" is not a duration ≥ 0 (e.g. 2s)`
}

func (e *flagError) Error() string { return e.flag + ": " + e.msg }

// flagValue is a kingpin.Value whose errors name the flag.
type flagValue struct {
	name string // "--window"
	// accept says what a value is, e.g. "a duration ≥ 0 (e.g. 2s)".
	accept string
	// what and example, when set, say it in two parts ("a duration ≥
	// 0", "2s"), for a message that shows the example as a whole flag.
	what, example string
	// set parses s and stores it; its error says what is wrong with s,
	// without the flag's name.
	set        func(s string) error
	get        func() string
	cumulative bool
}

func (v *flagValue) Set(s string) error {
	if err := v.set(s); err != nil {
		return &flagError{flag: v.name, msg: err.Error()}
	}
	return nil
}

func (v *flagValue) String() string { return v.get() }

// IsCumulative makes a flag repeatable (kingpin's repeatableFlag).
func (v *flagValue) IsCumulative() bool { return v.cumulative }

func setValue(c *kingpin.FlagClause, v *flagValue) {
	v.name = "--" + c.Model().Name
	c.SetValue(v)
}

// durationFlag accepts a duration ≥ min (> 0 when min is 0 and positive is
// set), in kingpin's syntax (1.5s, 500ms, 2m, 1h30m, 1d).
func durationFlag(c *kingpin.FlagClause, p *time.Duration, min time.Duration, positive bool, example string) {
	bound := "≥ " + fmtDuration(min)
	if positive && min <= 0 {
		bound, min = "> 0", 1
	}
	what := "a duration " + bound
	accept := fmt.Sprintf("%s (e.g. %s)", what, example)
	setValue(c, &flagValue{
		accept: accept, what: what, example: example,
		set: func(s string) error {
			d, err := str2duration.ParseDuration(s)
			if err != nil || d < min {
				return fmt.Errorf("%s is not %s", quote(s), accept)
			}
			*p = d
			return nil
		},
		get: func() string { return fmtDuration(*p) },
	})
}

func fmtDuration(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	return d.String()
}

// intFlag accepts a whole number ≥ min.
func intFlag(c *kingpin.FlagClause, p *int, min int, example string) {
	what := fmt.Sprintf("a whole number ≥ %d", min)
	accept := fmt.Sprintf("%s (e.g. %s)", what, example)
	setValue(c, &flagValue{
		accept: accept, what: what, example: example,
		set: func(s string) error {
			v, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || v < min {
				return fmt.Errorf("%s is not %s", quote(s), accept)
			}
			*p = v
			return nil
		},
		get: func() string { return strconv.Itoa(*p) },
	})
}

// ratioFlag accepts a share from 0 to 1 ("0.3").
func ratioFlag(c *kingpin.FlagClause, p *float64, example string) {
	const what = "a number from 0 to 1"
	accept := fmt.Sprintf("%s (e.g. %s)", what, example)
	setValue(c, &flagValue{
		accept: accept, what: what, example: example,
		set: func(s string) error {
			v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || !(v >= 0 && v <= 1) {
				return fmt.Errorf("%s is not %s", quote(s), accept)
			}
			*p = v
			return nil
		},
		get: func() string { return strconv.FormatFloat(*p, 'f', -1, 64) },
	})
}

// httpURLsFlag accepts an http(s) URL with a host, and is repeatable;
// what says what it names ("a stormwatch daemon's URL").
func httpURLsFlag(c *kingpin.FlagClause, p *[]string, what, example string) {
	what += " (http:// or https:// and a host)"
	accept := what + " (e.g. " + example + ")"
	setValue(c, &flagValue{
		accept: accept, what: what, example: example,
		set: func(s string) error {
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("%s is not %s", quote(s), accept)
			}
			*p = append(*p, s)
			return nil
		},
		get:        func() string { return strings.Join(*p, ",") },
		cumulative: true,
	})
	c.PlaceHolder("URL")
}

// portRangesFlag accepts a list of ports and ranges, "6379,7000-7010".
func portRangesFlag(c *kingpin.FlagClause, p *[]collector.PortRange) {
	var raw string
	setValue(c, &flagValue{
		accept: portListHelp, what: "ports and ranges", example: "6379,7000-7010",
		set: func(s string) error {
			r, err := parsePortRanges(s)
			if err != nil {
				return err
			}
			raw, *p = s, r
			return nil
		},
		get: func() string { return raw },
	})
	c.PlaceHolder("PORTS")
}

// globListHelp is what a glob pattern list flag accepts.
const globListHelp = "glob patterns like eth*,ens[0-9]*"

// globsFlag accepts a comma-separated list of glob patterns (path.Match
// syntax) for interface names.
func globsFlag(c *kingpin.FlagClause, p *[]string) {
	var raw string
	setValue(c, &flagValue{
		accept: globListHelp, what: "glob patterns", example: "eth*,ens*",
		set: func(s string) error {
			g, err := parseGlobs(s)
			if err != nil {
				return err
			}
			raw, *p = s, g
			return nil
		},
		get: func() string { return raw },
	})
	c.PlaceHolder("PATTERNS")
}

// parseGlobs parses "eth*,ens[0-9]*" into patterns. Its errors name the bad
// item and what is accepted, for the caller to prefix with the flag's name.
func parseGlobs(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("%s has an empty item (want %s)", quote(s), globListHelp)
		}
		if _, err := path.Match(part, ""); err != nil {
			return nil, fmt.Errorf("%s is not a glob pattern: a [...] class unclosed, empty or with a bad range, or a \\ at the end (want %s)", quote(part), globListHelp)
		}
		if strings.Contains(part, "/") {
			return nil, fmt.Errorf("%s can match no interface: names have no / (want %s)", quote(part), globListHelp)
		}
		out = append(out, part)
	}
	return out, nil
}

// portsFlag accepts one port, and is repeatable.
func portsFlag(c *kingpin.FlagClause, p *[]uint16) {
	setValue(c, &flagValue{
		accept: "a port (1-65535)", what: "a port (1-65535)", example: "6379",
		set: func(s string) error {
			port, err := parsePort(s)
			if err != nil {
				return err
			}
			*p = append(*p, port)
			return nil
		},
		get:        func() string { return fmt.Sprint(*p) },
		cumulative: true,
	})
	c.PlaceHolder("PORT")
}

// enumFlag accepts one of options; noun names what they are ("a format").
func enumFlag(c *kingpin.FlagClause, p *string, noun string, options ...string) {
	accept := fmt.Sprintf("%s (%s)", noun, orList(options))
	setValue(c, &flagValue{
		accept: accept,
		set: func(s string) error {
			if !slices.Contains(options, s) {
				return fmt.Errorf("%s is not %s", quote(s), accept)
			}
			*p = s
			return nil
		},
		get: func() string { return *p },
	})
	c.HintOptions(options...)
}

// wrapFlag gives the value another package parses (promslog's level) an
// error that names the flag and what it accepts.
func wrapFlag(c *kingpin.FlagClause, v kingpin.Value, noun string, options ...string) {
	accept := fmt.Sprintf("%s (%s)", noun, orList(options))
	setValue(c, &flagValue{
		accept: accept,
		set: func(s string) error {
			if err := v.Set(s); err != nil {
				return fmt.Errorf("%s is not %s", quote(s), accept)
			}
			return nil
		},
		get: v.String,
	})
	c.HintOptions(options...)
}

// dirFlag accepts an existing directory; what says which.
func dirFlag(c *kingpin.FlagClause, p *string, what, example string) {
	accept := fmt.Sprintf("%s (e.g. %s)", what, example)
	setValue(c, &flagValue{
		accept: accept, what: what, example: example,
		set: func(s string) error {
			fi, err := os.Stat(s)
			switch {
			case err != nil && os.IsNotExist(err):
				return fmt.Errorf("%s does not exist; want %s", quote(s), accept)
			case err != nil:
				return fmt.Errorf("%s: %w; want %s", quote(s), unwrapPath(err), accept)
			case !fi.IsDir():
				return fmt.Errorf("%s is not a directory; want %s", quote(s), accept)
			}
			*p = s
			return nil
		},
		get: func() string { return *p },
	})
}

// urlPathRE is an absolute URL path of RFC 3986 path characters; braces,
// spaces and query characters are refused (http.ServeMux would read them as
// wildcards or a method).
var urlPathRE = regexp.MustCompile(`^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$`)

// urlPathFlag accepts an absolute URL path.
func urlPathFlag(c *kingpin.FlagClause, p *string, example string) {
	const what = "a URL path starting with /"
	accept := what + " (e.g. " + example + ")"
	setValue(c, &flagValue{
		accept: accept, what: what, example: example,
		set: func(s string) error {
			if !urlPathRE.MatchString(s) {
				return fmt.Errorf("%s is not %s", quote(s), accept)
			}
			*p = s
			return nil
		},
		get: func() string { return *p },
	})
}

// checkListenAddress checks one --web.listen-address value the way
// bindWeb will use it: vsock://:PORT, or [host]:port with a numeric port or
// a service name. The value is exporter-toolkit's, so it is checked after
// parsing.
func checkListenAddress(addr string) error {
	const accept = "an address to listen on ([host]:port or vsock://:port, e.g. :9955 or 127.0.0.1:9955)"
	bad := &flagError{flag: "--web.listen-address", msg: fmt.Sprintf("%s is not %s", quote(addr), accept)}
	if rest, ok := strings.CutPrefix(addr, "vsock://"); ok {
		_, port, err := net.SplitHostPort(rest)
		if err != nil {
			return bad
		}
		if _, err := strconv.ParseUint(port, 10, 32); err != nil {
			return bad
		}
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return bad
	}
	if _, err := strconv.ParseUint(port, 10, 16); err == nil {
		return nil
	}
	if !serviceNameRE.MatchString(port) { // a service name, like "http"
		return bad
	}
	return nil
}

var serviceNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

func orList(options []string) string {
	switch len(options) {
	case 0:
		return ""
	case 1:
		return options[0]
	}
	return strings.Join(options[:len(options)-1], ", ") + " or " + options[len(options)-1]
}

// unwrapPath drops the "stat /x: " of a *PathError; the caller quotes the
// path itself.
func unwrapPath(err error) error {
	if pe := (*os.PathError)(nil); errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// flagIndex knows every flag of the application, by long name, and the
// commands that have it ("" for the application's own flags).
type flagIndex struct {
	flags    map[string]*kingpin.FlagModel
	commands map[string][]string
	cmdNames []string
	defCmd   string
}

func newFlagIndex(app *kingpin.Application) *flagIndex {
	m := app.Model()
	ix := &flagIndex{flags: map[string]*kingpin.FlagModel{}, commands: map[string][]string{}}
	add := func(cmd string, flags []*kingpin.FlagModel) {
		for _, f := range flags {
			if _, ok := ix.flags[f.Name]; !ok {
				ix.flags[f.Name] = f
			}
			ix.commands[f.Name] = append(ix.commands[f.Name], cmd)
		}
	}
	add("", m.Flags)
	for _, c := range m.Commands {
		if c.Hidden {
			continue
		}
		if c.Name != "help" { // kingpin's own; not worth listing
			ix.cmdNames = append(ix.cmdNames, c.Name)
		}
		if c.Default {
			ix.defCmd = c.Name
		}
		add(c.Name, c.Flags)
	}
	return ix
}

// negativeRE matches a value that starts with "-" but is no flag: a
// negative number or duration.
var negativeRE = regexp.MustCompile(`^-[0-9.]`)

// normalizeArgs prepares args for kingpin, which reads any argument
// starting with "-" as a flag: "--window -1s" becomes "--window=-1s" (so
// the value is judged, and refused, as a value), "--quiet=false" becomes
// "--no-quiet". A flag whose value is missing is an error naming it. It
// also returns the command the arguments select.
func (ix *flagIndex) normalizeArgs(args []string) ([]string, string, error) {
	out := make([]string, 0, len(args))
	cmd := ""
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			out = append(out, args[i:]...)
			break
		}
		if !strings.HasPrefix(arg, "--") {
			if cmd == "" && !strings.HasPrefix(arg, "-") && slices.Contains(ix.cmdNames, arg) {
				cmd = arg
			}
			out = append(out, arg)
			continue
		}
		name, value, hasValue := strings.Cut(arg[2:], "=")
		f, known := ix.flags[name]
		switch {
		case !known:
			out = append(out, arg)
		case f.IsBoolFlag() && hasValue:
			b, err := strconv.ParseBool(value)
			if err != nil {
				return nil, cmd, &flagError{flag: "--" + name, msg: fmt.Sprintf("%s is not a boolean (true or false); or write --%s or --no-%s", quote(value), name, name)}
			}
			if b {
				out = append(out, "--"+name)
			} else {
				out = append(out, "--no-"+name)
			}
		case f.IsBoolFlag() || hasValue:
			out = append(out, arg)
		case i+1 == len(args):
			return nil, cmd, ix.missingValue(name, "")
		case strings.HasPrefix(args[i+1], "-") && len(args[i+1]) > 1:
			if !negativeRE.MatchString(args[i+1]) {
				return nil, cmd, ix.missingValue(name, args[i+1])
			}
			out = append(out, "--"+name+"="+args[i+1])
			i++
		default:
			out = append(out, arg, args[i+1])
			i++
		}
	}
	if cmd == "" {
		cmd = ix.defCmd
	}
	return out, cmd, nil
}

// missingValue explains a flag given without its value; next is the
// argument that followed it, if any.
func (ix *flagIndex) missingValue(name, next string) error {
	msg := "missing value"
	f, ok := ix.flags[name]
	v, _ := f.Value.(*flagValue)
	switch {
	case next != "":
		msg += fmt.Sprintf(`: %s starts with "-", so it is read as a flag; if it is the value, write --%s=%s`, quote(next), name, next)
	case v != nil && v.example != "":
		msg += fmt.Sprintf("; want %s, e.g. --%s=%s", v.what, name, v.example)
	case v != nil:
		msg += "; want " + v.accept
	case ok:
		msg += fmt.Sprintf("; write --%s=%s", name, f.FormatPlaceHolder())
	}
	return &flagError{flag: "--" + name, msg: msg}
}

var (
	unknownLongRE  = regexp.MustCompile(`^unknown long flag '--(.+)'$`)
	unknownShortRE = regexp.MustCompile(`^unknown short flag '-(.+)'$`)
	expectedArgRE  = regexp.MustCompile(`^expected argument for flag '--(.+)'$`)
	repeatedRE     = regexp.MustCompile(`^flag '(.+)' cannot be repeated$`)
	unexpectedRE   = regexp.MustCompile(`^unexpected (.+)$`)
)

// explainParseError rewrites kingpin's own parse errors so that they name
// the flag or argument and say what to do; cmd is the command the
// arguments select. Errors from the flag values pass unchanged.
func (ix *flagIndex) explainParseError(err error, cmd string) error {
	if fe := (*flagError)(nil); errors.As(err, &fe) {
		return err
	}
	msg := err.Error()
	help := fmt.Sprintf("stormwatch %s --help lists them", cmd)
	if m := unknownLongRE.FindStringSubmatch(msg); m != nil {
		name := strings.TrimPrefix(m[1], "no-")
		if owners := ix.commands[name]; len(owners) > 0 && !slices.Contains(owners, "") {
			return &flagError{flag: "--" + m[1], msg: fmt.Sprintf("not a flag of %s; it is a flag of %s (stormwatch %s --%s=…)", ix.cmdLabel(cmd), orList(owners), owners[0], name)}
		}
		var names []string
		for n, owners := range ix.commands {
			if slices.Contains(owners, cmd) || slices.Contains(owners, "") {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		if near := nearest(m[1], names); near != "" {
			return &flagError{flag: "--" + m[1], msg: fmt.Sprintf("unknown flag; did you mean --%s?", near)}
		}
		return &flagError{flag: "--" + m[1], msg: "unknown flag (" + help + ")"}
	}
	if m := unknownShortRE.FindStringSubmatch(msg); m != nil {
		return &flagError{flag: "-" + m[1], msg: "unknown flag (" + help + ")"}
	}
	if m := expectedArgRE.FindStringSubmatch(msg); m != nil {
		return ix.missingValue(m[1], "")
	}
	if m := repeatedRE.FindStringSubmatch(msg); m != nil {
		return &flagError{flag: "--" + m[1], msg: "given more than once; give it once"}
	}
	if m := unexpectedRE.FindStringSubmatch(msg); m != nil {
		arg := m[1]
		if near := nearest(arg, ix.cmdNames); near != "" && near != cmd {
			return fmt.Errorf("%s is not a command; did you mean %s? (commands: %s)", quote(arg), near, strings.Join(ix.cmdNames, ", "))
		}
		return fmt.Errorf("unexpected argument %s: %s takes no arguments (commands: %s; stormwatch --help)", quote(arg), ix.cmdLabel(cmd), strings.Join(ix.cmdNames, ", "))
	}
	return fmt.Errorf("%s (try stormwatch --help)", msg)
}

// cmdLabel names a command for a message, saying when it is the default.
func (ix *flagIndex) cmdLabel(cmd string) string {
	if cmd == ix.defCmd {
		return cmd + " (the default command)"
	}
	return cmd
}
