package alerts

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"gopkg.in/yaml.v3"
)

// templateFuncs are the functions summary and description templates may
// call, besides text/template's own.
var templateFuncs = template.FuncMap{
	"pct":              pct,
	"humanize":         humanize,
	"humanizeDuration": humanizeDuration,
}

// toFloat accepts the numbers templates handle.
func toFloat(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case float32:
		return float64(x), nil
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case uint64:
		return float64(x), nil
	case uint32:
		return float64(x), nil
	case string:
		return strconv.ParseFloat(x, 64)
	}
	return 0, fmt.Errorf("not a number: %T", v)
}

// pct formats a ratio as a percentage: 0.834 → "83.4%".
func pct(v any) (string, error) {
	f, err := toFloat(v)
	if err != nil {
		return "", err
	}
	return strconv.FormatFloat(f*100, 'f', 1, 64) + "%", nil
}

// humanize formats a number with an SI prefix and four significant
// digits: 1234567 → "1.235M", 0.0123 → "12.3m".
func humanize(v any) (string, error) {
	f, err := toFloat(v)
	if err != nil {
		return "", err
	}
	if f == 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return strconv.FormatFloat(f, 'g', 4, 64), nil
	}
	const prefixes = "afpnµm kMGTPE"
	const unit = 6 // index of ' ' (no prefix)
	exp := int(math.Floor(math.Log10(math.Abs(f)) / 3))
	exp = max(-unit, min(exp, len([]rune(prefixes))-1-unit))
	scaled := f / math.Pow(1000, float64(exp))
	s := strconv.FormatFloat(scaled, 'g', 4, 64)
	if exp != 0 {
		s += string([]rune(prefixes)[exp+unit])
	}
	return s, nil
}

// humanizeDuration formats seconds as a duration: 95 → "1m35s",
// +Inf → "never".
func humanizeDuration(v any) (string, error) {
	f, err := toFloat(v)
	if err != nil {
		return "", err
	}
	switch {
	case math.IsNaN(f):
		return "unknown", nil
	case math.IsInf(f, 1):
		return "never", nil
	case math.Abs(f) < 1:
		return strconv.FormatFloat(f, 'g', 3, 64) + "s", nil
	case math.Abs(f) > 100*365*24*3600:
		return strconv.FormatFloat(f, 'g', 3, 64) + "s", nil
	}
	return time.Duration(math.Round(f) * float64(time.Second)).String(), nil
}

// sampleData returns template data of scope sv with every value set, for
// checking templates at load.
func sampleData(sv *scopeVocab) map[string]any {
	d := map[string]any{"value": 0.5, "labels": map[string]string{}, "span": 10.0}
	for _, v := range slices.Concat(sv.host, sv.own) {
		d[v.Name] = 1.0
	}
	for _, l := range sv.labels {
		if l.isInt {
			d[l.name] = 6379
		} else {
			d[l.name] = "0.0.0.0"
		}
	}
	if sv.kind != 0 {
		for _, a := range sv.attrs {
			d[a] = "x"
		}
	}
	for _, j := range sv.joins {
		jd := map[string]any{}
		for _, v := range j.vars {
			jd[v.ref.Name] = 1.0
		}
		d[j.name] = jd
	}
	return d
}

// maxAnnotation caps a rendered annotation.
const maxAnnotation = 4 << 10

var errTooLong = errors.New("rendered text too long")

// cappedWriter fails once more than maxAnnotation bytes were written.
type cappedWriter struct{ b strings.Builder }

func (w *cappedWriter) Write(p []byte) (int, error) {
	if w.b.Len()+len(p) > maxAnnotation {
		return 0, errTooLong
	}
	return w.b.Write(p)
}

// templateErrRE strips text/template's own prefix from its errors: the
// field and position are reported in the rules file's terms.
var templateErrRE = regexp.MustCompile(`^template: [^:]*:\d+(:\d+)?: (executing "[^"]*" )?`)

func templateMessage(err error) string {
	return templateErrRE.ReplaceAllString(err.Error(), "")
}

// template parses an annotation template and runs it once on sample data,
// which catches unknown functions and misspelt value names.
func (ld *loader) template(src, field string, data map[string]any, n *yaml.Node, rule string) *template.Template {
	t, err := template.New(field).Option("missingkey=error").Funcs(templateFuncs).Parse(src)
	if err != nil {
		ld.errorf(n, rule, "%s: %s", field, templateMessage(err))
		return nil
	}
	if len(t.Templates()) > 1 {
		ld.errorf(n, rule, "%s: defining templates is not supported", field)
		return nil
	}
	if msg := checkRanges(t.Root); msg != "" {
		ld.errorf(n, rule, "%s: %s", field, msg)
		return nil
	}
	var w cappedWriter
	if err := t.Execute(&w, data); err != nil {
		ld.errorf(n, rule, "%s: %s", field, templateMessage(err))
		return nil
	}
	return t
}

// checkRanges allows range only over a value of the data (.labels): a
// range over a number could loop for as long as it likes.
func checkRanges(n parse.Node) string {
	switch x := n.(type) {
	case *parse.ListNode:
		if x == nil {
			return ""
		}
		for _, c := range x.Nodes {
			if msg := checkRanges(c); msg != "" {
				return msg
			}
		}
	case *parse.RangeNode:
		p := x.Pipe
		if len(p.Decl) > 2 || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
			return "range must be over a field, like {{ range $k, $v := .labels }}"
		}
		if _, ok := p.Cmds[0].Args[0].(*parse.FieldNode); !ok {
			return "range must be over a field, like {{ range $k, $v := .labels }}"
		}
		if msg := checkRanges(x.List); msg != "" {
			return msg
		}
		return checkRanges(x.ElseList)
	case *parse.IfNode:
		if msg := checkRanges(x.List); msg != "" {
			return msg
		}
		return checkRanges(x.ElseList)
	case *parse.WithNode:
		if msg := checkRanges(x.List); msg != "" {
			return msg
		}
		return checkRanges(x.ElseList)
	}
	return ""
}

// render expands t with data; a failure becomes the annotation's text, as
// in Prometheus.
func render(t *template.Template, data map[string]any) string {
	if t == nil {
		return ""
	}
	var w cappedWriter
	if err := t.Execute(&w, data); err != nil {
		return "<error expanding template: " + templateMessage(err) + ">"
	}
	return w.b.String()
}
