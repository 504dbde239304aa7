package alerts

import (
	"math"
	"strings"
	"testing"
)

// FuzzTemplate parses an annotation template as the rule loader does and
// renders it on every scope's data with a fuzzed value: loading either
// accepts the template or reports an error, never both or neither, and a
// rendered annotation stays within maxAnnotation.
func FuzzTemplate(f *testing.F) {
	for _, r := range DefaultRules() {
		for _, src := range []string{r.Summary, r.Description, r.Advice} {
			if src != "" {
				f.Add(src, 0.5)
			}
		}
	}
	for _, s := range []string{
		`{{ range $k, $v := .labels }}{{ $k }}={{ $v }} {{ end }}`,
		`{{ range 100000000 }}x{{ end }}`,
		`{{ define "x" }}{{ end }}`,
		`{{ .value | humanizeDuration }} {{ .value | humanize }} {{ .value | pct }}`,
		`{{ .nope }}`,
		`{{ printf "%0999999d" 1 }}`,
		`{{ if .value }}{{ else }}{{ end }}{{ with .labels }}{{ . }}{{ end }}`,
	} {
		f.Add(s, math.Inf(1))
	}
	f.Fuzz(func(t *testing.T, src string, value float64) {
		if len(src) > 4<<10 {
			return // over the 4 KiB size cap: larger inputs only slow the fuzzer
		}
		vb := DefaultVocabulary()
		for scope, sv := range vb.scopes {
			ld := &loader{vocab: vb, file: "fuzz.yml"}
			data := sampleData(sv)
			tmpl := ld.template(src, "summary", data, nil, "Fuzz")
			if (tmpl == nil) != (len(ld.errs) > 0) {
				t.Fatalf("scope %s: template %v with errors %v", scope, tmpl != nil, ld.errs)
			}
			if tmpl == nil {
				continue
			}
			data["value"] = value
			out := render(tmpl, data)
			if !strings.HasPrefix(out, "<error expanding template: ") && len(out) > maxAnnotation {
				t.Fatalf("scope %s: rendered %d bytes, more than the %d cap", scope, len(out), maxAnnotation)
			}
		}
	})
}
