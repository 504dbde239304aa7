package alerts

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
	"github.com/prometheus/common/model"
	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/internal/yamldoc"
	"gopkg.in/yaml.v3"
)

var (
	nameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// ruleFields are the fields a rule may have, in the order they are
// documented.
var ruleFields = []string{
	"name", "scope", "condition", "value", "for", "keep_firing_for",
	"severity", "labels", "summary", "description", "advice", "section",
}

// fieldHints answer the field names people bring from Prometheus.
var fieldHints = map[string]string{
	"alert":       `use "name"`,
	"expr":        `use "condition"`,
	"annotations": `use "summary" and "description"`,
	"groups":      `rules are one flat "rules" list`,
}

// reservedLabels are set by stormwatch on every alert; the labels of
// every entity kind are reserved too.
var reservedLabels = map[string]bool{
	model.AlertNameLabel: true, "severity": true, "alertstate": true,
}

// reserved reports whether label name is set by stormwatch.
func (vb *Vocabulary) reserved(name string) bool {
	if reservedLabels[name] {
		return true
	}
	for _, k := range vb.schema.Kinds() {
		for _, l := range k.Labels {
			if l.Name == name {
				return true
			}
		}
	}
	return false
}

type loader struct {
	vocab *Vocabulary
	file  string
	lines []string
	errs  Errors
}

func (ld *loader) errorf(n *yaml.Node, rule, format string, args ...any) {
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	ld.errAt(line, col, rule, fmt.Sprintf(format, args...))
}

func (ld *loader) errAt(line, col int, rule, msg string) {
	ld.errs = append(ld.errs, &Error{File: ld.file, Line: line, Column: col, Rule: rule, Msg: msg})
}

func load(vb *Vocabulary, file string, data []byte) ([]*Rule, error) {
	ld := &loader{vocab: vb, file: file, lines: strings.Split(string(data), "\n")}
	rules := ld.load(data)
	if len(ld.errs) > 0 {
		return nil, ld.errs
	}
	return rules, nil
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 16; i++ {
		n = n.Alias
	}
	return n
}

func (ld *loader) syntaxError(err error) {
	line, msg := yamldoc.Syntax(err)
	ld.errAt(line, 0, "", "syntax error: "+msg)
}

func (ld *loader) load(data []byte) []*Rule {
	doc, err := yamldoc.Decode(data)
	if err != nil {
		if errors.Is(err, io.EOF) {
			ld.errAt(1, 1, "", `empty rules file: want a "rules" list`)
		} else {
			ld.syntaxError(err)
		}
		return nil
	}
	if doc.Extra != nil {
		ld.errorf(doc.Extra, "", "only one YAML document is allowed")
	} else if doc.RestErr != nil {
		ld.syntaxError(doc.RestErr)
	}
	root := &doc.Root
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = resolve(root.Content[0])
	}
	if root.Kind != yaml.MappingNode {
		ld.errorf(root, "", `want a mapping with a "rules" list`)
		return nil
	}
	var rulesNode *yaml.Node
	ld.fields(root, "", []string{"rules"}, func(key string, _, v *yaml.Node) {
		rulesNode = v
	})
	if rulesNode == nil {
		if len(ld.errs) == 0 {
			ld.errorf(root, "", `missing field "rules"`)
		}
		return nil
	}
	rulesNode = resolve(rulesNode)
	if rulesNode.Kind == yaml.ScalarNode && rulesNode.Tag == "!!null" {
		return nil // "rules:" with nothing: no rules
	}
	if rulesNode.Kind != yaml.SequenceNode {
		ld.errorf(rulesNode, "", `"rules" must be a list of rules`)
		return nil
	}
	var rules []*Rule
	type seen struct {
		line, col int
	}
	keys := map[string]seen{}
	for _, n := range rulesNode.Content {
		r, nameNode := ld.rule(resolve(n))
		if r == nil {
			continue
		}
		if first, dup := keys[r.key]; dup {
			ld.errorf(nameNode, r.Name, "duplicate rule: same name and labels as the rule at %d:%d", first.line, first.col)
			continue
		}
		keys[r.key] = seen{nameNode.Line, nameNode.Column}
		rules = append(rules, r)
	}
	return rules
}

// fields walks the keys of mapping n, reporting unknown and repeated ones,
// and calls f for each known one.
func (ld *loader) fields(n *yaml.Node, rule string, known []string, f func(key string, k, v *yaml.Node)) {
	first := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			ld.errorf(k, rule, "field names must be strings")
			continue
		}
		key := k.Value
		switch {
		case key == "<<":
			ld.errorf(k, rule, "merge keys (<<) are not supported")
			continue
		case !slices.Contains(known, key):
			msg := fmt.Sprintf("unknown field %q", key)
			if h, ok := fieldHints[key]; ok {
				msg += ": " + h
			}
			ld.errorf(k, rule, "%s", msg)
			continue
		}
		if prev, dup := first[key]; dup {
			ld.errorf(k, rule, "field %q repeated (first at %d:%d)", key, prev.Line, prev.Column)
			continue
		}
		first[key] = k
		f(key, k, v)
	}
}

// scalar returns the text of a scalar node; a null is the empty string.
func (ld *loader) scalar(n *yaml.Node, rule, field string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		ld.errorf(n, rule, "%s must be a string", field)
		return "", false
	}
	if n.Tag == "!!null" {
		return "", true
	}
	return n.Value, true
}

func (ld *loader) duration(n *yaml.Node, rule, field string) (time.Duration, bool) {
	s, ok := ld.scalar(n, rule, field)
	if !ok {
		return 0, false
	}
	if s == "" {
		return 0, true
	}
	d, err := model.ParseDuration(s)
	if err != nil {
		ld.errorf(resolve(n), rule, "%s: %q is not a duration (use e.g. 30s, 5m, 1h)", field, s)
		return 0, false
	}
	return time.Duration(d), true
}

// rule validates and compiles one rule. It returns nil when the rule has
// errors, with the node of its name for reporting duplicates.
func (ld *loader) rule(n *yaml.Node) (*Rule, *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		ld.errorf(n, "", "a rule must be a mapping")
		return nil, nil
	}
	nerr := len(ld.errs)
	nodes := map[string]*yaml.Node{}
	ld.fields(n, "", ruleFields, func(key string, _, v *yaml.Node) {
		nodes[key] = resolve(v)
	})

	// Defaults first.
	r := &Rule{Scope: ScopeHost, Severity: SeverityWarning}

	// Then what the file says.
	nameNode := nodes["name"]
	if nameNode != nil {
		r.Name, _ = ld.scalar(nameNode, "", "name")
	}
	// Earlier errors (unknown fields) did not know the rule's name.
	for _, e := range ld.errs[nerr:] {
		e.Rule = r.Name
	}
	switch {
	case nameNode == nil || r.Name == "":
		ld.errorf(n, "", `missing field "name"`)
	case !nameRE.MatchString(r.Name):
		ld.errorf(nameNode, "", "name %q must match %s", r.Name, nameRE)
		r.Name = ""
	}
	name := r.Name
	if v := nodes["scope"]; v != nil {
		if s, ok := ld.scalar(v, name, "scope"); ok && s != "" {
			r.Scope = Scope(s)
			if _, known := ld.vocab.scopes[r.Scope]; !known {
				ld.errorf(v, name, "scope %q: must be %s", s, ld.vocab.scopeNames())
			}
		}
	}
	if v := nodes["severity"]; v != nil {
		if s, ok := ld.scalar(v, name, "severity"); ok && s != "" {
			r.Severity = Severity(s)
			switch r.Severity {
			case SeverityInfo, SeverityWarning, SeverityCritical:
			default:
				ld.errorf(v, name, "severity %q: must be info, warning or critical", s)
			}
		}
	}
	if v := nodes["for"]; v != nil {
		r.For, _ = ld.duration(v, name, "for")
	}
	if v := nodes["keep_firing_for"]; v != nil {
		r.KeepFiringFor, _ = ld.duration(v, name, "keep_firing_for")
	}
	if v := nodes["labels"]; v != nil {
		r.Labels = ld.labels(v, name)
	}
	if v := nodes["summary"]; v != nil {
		r.Summary, _ = ld.scalar(v, name, "summary")
	}
	if v := nodes["description"]; v != nil {
		r.Description, _ = ld.scalar(v, name, "description")
	}
	if v := nodes["advice"]; v != nil {
		r.Advice, _ = ld.scalar(v, name, "advice")
	}
	if v := nodes["value"]; v != nil {
		r.Value, _ = ld.scalar(v, name, "value")
	}
	if v := nodes["condition"]; v != nil {
		r.Condition, _ = ld.scalar(v, name, "condition")
	}
	if v := nodes["section"]; v != nil {
		if s, ok := ld.scalar(v, name, "section"); ok && s != "" {
			r.Section = s
			if !ld.vocab.hasSection(s) {
				ld.errorf(v, name, "section %q: must be one of %s", s, strings.Join(ld.vocab.sectionNames(), ", "))
			}
		}
	}
	if len(ld.errs) > nerr {
		return nil, nil // the rest needs a valid scope
	}

	// Then compile what depends on the scope.
	sv := ld.vocab.scopes[r.Scope]
	if r.Condition == "" {
		ld.errorf(n, name, `missing field "condition"`)
	} else {
		ld.compile(r, sv, nodes["condition"])
	}
	if r.Value != "" {
		ld.compileValue(r, sv, nodes["value"])
	}
	data := sampleData(sv)
	labels := r.baseLabels()
	for _, l := range sv.labels {
		labels[l.name] = fmt.Sprint(data[l.name])
	}
	data["labels"] = labels
	if r.Summary != "" {
		r.summary = ld.template(r.Summary, "summary", data, nodes["summary"], name)
	}
	if r.Description != "" {
		r.description = ld.template(r.Description, "description", data, nodes["description"], name)
	}
	if r.Advice != "" {
		r.advice = ld.template(r.Advice, "advice", data, nodes["advice"], name)
	}
	if len(ld.errs) > nerr {
		return nil, nil
	}
	r.key = ruleKey(r.Name, r.baseLabels())
	r.vocab = ld.vocab
	return r, nameNode
}

func (ld *loader) labels(n *yaml.Node, rule string) map[string]string {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		ld.errorf(n, rule, "labels must be a mapping of names to values")
		return nil
	}
	out := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			ld.errorf(k, rule, "label names must be strings")
			continue
		}
		switch name := k.Value; {
		case !nameRE.MatchString(name):
			ld.errorf(k, rule, "label name %q must match %s", name, nameRE)
		case ld.vocab.reserved(name):
			ld.errorf(k, rule, "label %q is reserved: stormwatch sets it", name)
		default:
			if _, dup := out[name]; dup {
				ld.errorf(k, rule, "label %q repeated", name)
				continue
			}
			val, ok := ld.scalar(v, rule, fmt.Sprintf("label %q", name))
			if !ok {
				continue
			}
			if val == "" {
				ld.errorf(v, rule, "label %q has an empty value", name)
				continue
			}
			out[name] = val
		}
	}
	return out
}

// exprPos maps a position in an expression (1-based line, 0-based rune
// column) to the rules file, for a scalar at node n. Plain, quoted and
// literal (|) scalars map exactly (escapes aside); a folded (>) scalar maps
// to its start.
func (ld *loader) exprPos(n *yaml.Node, line, col int) (int, int) {
	if n == nil {
		return 0, 0
	}
	switch n.Style {
	case 0, yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		if line == 1 {
			off := 0
			if n.Style != 0 {
				off = 1
			}
			return n.Line, n.Column + off + col
		}
	case yaml.LiteralStyle:
		// The block's indentation is that of its first non-blank line.
		for i := n.Line; i < len(ld.lines); i++ { // ld.lines[i] is line i+1
			text := ld.lines[i]
			if strings.TrimSpace(text) == "" {
				continue
			}
			indent := utf8.RuneCountInString(text) - utf8.RuneCountInString(strings.TrimLeft(text, " "))
			return n.Line + line, indent + 1 + col
		}
	}
	return n.Line, n.Column
}

// offsetPos turns a rune offset in src into a 1-based line and 0-based
// column.
func offsetPos(src string, from int) (line, col int) {
	line = 1
	i := 0
	for _, r := range src {
		if i == from {
			break
		}
		if r == '\n' {
			line++
			col = 0
		} else {
			col++
		}
		i++
	}
	return line, col
}

// exprError reports a compile error of an expression at its place in the
// file.
func (ld *loader) exprError(n *yaml.Node, rule, field string, err error) {
	var fe *file.Error
	if errors.As(err, &fe) && fe.Snippet != "" {
		line, col := ld.exprPos(n, fe.Line, fe.Column)
		ld.errAt(line, col, rule, field+": "+fe.Message)
		return
	}
	msg := err.Error()
	if fe != nil {
		msg = fe.Message
	}
	ld.errorf(n, rule, "%s: %s", field, msg)
}

// seriesFuncs are the functions reading a series over a window: how many
// arguments they take (the first is the series), the index of each that is
// a window, and whether the series must be a counter.
var seriesFuncs = map[string]struct {
	nargs   int
	windows []int
	counter bool
}{
	"increase":      {2, []int{1}, true},
	"rate":          {2, []int{1}, true},
	"max_over_time": {2, []int{1}, false},
	"min_over_time": {2, []int{1}, false},
	"time_to_limit": {3, []int{2}, false},
	"baseline_rate": {3, []int{1, 2}, true},
}

// checker collects the variables a condition reads and checks the literal
// arguments of the series functions.
type checker struct {
	sv   *scopeVocab
	refs []*variable
	// mentions are the value names the expression reads, directly or as a
	// series, in order of appearance.
	mentions  []string
	errs      []checkError
	lookbacks map[Scope]time.Duration
	// series are the values read over windows, by entity kind.
	series map[string][]string
	// measures: the expression reads a value that is not a setting.
	measures bool
}

type checkError struct {
	loc file.Location
	msg string
}

func (c *checker) errorf(n ast.Node, format string, args ...any) {
	c.errs = append(c.errs, checkError{n.Location(), fmt.Sprintf(format, args...)})
}

func (c *checker) mention(v *variable) {
	if v.Kind != "label" && !v.Setting {
		c.measures = true
	}
	if !slices.Contains(c.mentions, v.Name) {
		c.mentions = append(c.mentions, v.Name)
	}
}

func (c *checker) ref(v *variable) {
	if !slices.Contains(c.refs, v) {
		c.refs = append(c.refs, v)
	}
	c.mention(v)
}

func (c *checker) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if v := c.sv.byName[n.Value]; v != nil {
			c.ref(v)
		}
	case *ast.MemberNode:
		// A joined entity's value: listener.accept_queue.
		id, ok1 := n.Node.(*ast.IdentifierNode)
		prop, ok2 := n.Property.(*ast.StringNode)
		if ok1 && ok2 {
			if v := c.sv.byName[id.Value+"."+prop.Value]; v != nil {
				c.ref(v)
			}
		}
	case *ast.CallNode:
		callee, ok := n.Callee.(*ast.IdentifierNode)
		if !ok {
			return
		}
		if callee.Value == "present" && len(n.Arguments) == 1 {
			if s, ok := n.Arguments[0].(*ast.StringNode); !ok {
				c.errorf(n.Arguments[0], "present: the value must be a quoted name like \"valkey.tcp_backlog\"")
			} else if c.sv.byName[s.Value] == nil {
				c.errorf(n.Arguments[0], "present: unknown value %q", s.Value)
			}
			return
		}
		fn, ok := seriesFuncs[callee.Value]
		if !ok || len(n.Arguments) != fn.nargs {
			return // the type checker reports the arity
		}
		c.call(callee.Value, n, fn.windows, fn.counter)
	}
}

func (c *checker) call(name string, n *ast.CallNode, windows []int, counter bool) {
	arg := n.Arguments[0]
	s, ok := arg.(*ast.StringNode)
	var v *variable
	switch {
	case !ok:
		c.errorf(arg, "%s: the series must be a quoted name like \"passive_opens\"", name)
	case c.sv.byName[s.Value] == nil:
		c.errorf(arg, "%s: unknown series %q", name, s.Value)
	case counter && !c.sv.byName[s.Value].counter():
		c.errorf(arg, "%s: %q is a gauge, %s needs a counter", name, s.Value, name)
	default:
		v = c.sv.byName[s.Value]
		c.mention(v)
	}
	var ds []time.Duration
	for _, i := range windows {
		arg := n.Arguments[i]
		s, ok := arg.(*ast.StringNode)
		if !ok {
			c.errorf(arg, "%s: the window must be a quoted duration like \"30s\"", name)
			continue
		}
		d, err := model.ParseDuration(s.Value)
		if err != nil || d <= 0 {
			c.errorf(arg, "%s: window %q is not a positive duration (use e.g. \"30s\", \"5m\")", name, s.Value)
			continue
		}
		ds = append(ds, time.Duration(d))
		if v != nil {
			if c.lookbacks == nil {
				c.lookbacks = map[Scope]time.Duration{}
			}
			k := v.Scope
			c.lookbacks[k] = max(c.lookbacks[k], time.Duration(d))
			kind := cmp.Or(v.ref.Entity, collector.HostKind)
			if c.series == nil {
				c.series = map[string][]string{}
			}
			if !slices.Contains(c.series[kind], v.ref.Name) {
				c.series[kind] = append(c.series[kind], v.ref.Name)
			}
		}
	}
	if name == "baseline_rate" && len(ds) == 2 && ds[1] >= ds[0] {
		c.errorf(n.Arguments[2], "%s: the excluded recent part %s must be shorter than the window %s", name, model.Duration(ds[1]), model.Duration(ds[0]))
	}
}

func compileOptions(sv *scopeVocab, out expr.Option, c *checker) []expr.Option {
	return []expr.Option{
		expr.Env(reflect.Zero(sv.env).Interface()),
		out,
		expr.Patch(c),
		// Time is an argument of Eval: conditions must not read the clock.
		expr.DisableBuiltin("now"),
	}
}

func (ld *loader) compile(r *Rule, sv *scopeVocab, n *yaml.Node) {
	c := &checker{sv: sv}
	prog, err := expr.Compile(r.Condition, compileOptions(sv, expr.AsBool(), c)...)
	if err != nil {
		ld.exprError(n, r.Name, "condition", err)
		return
	}
	if len(c.errs) > 0 {
		for _, e := range c.errs {
			line, col := offsetPos(r.Condition, e.loc.From)
			line, col = ld.exprPos(n, line, col)
			ld.errAt(line, col, r.Name, "condition: "+e.msg)
		}
		return
	}
	r.prog, r.refs, r.mentions, r.standing = prog, c.refs, c.mentions, !c.measures
	r.addLookbacks(c.lookbacks, c.series)
	if r.Value == "" {
		r.valueProg = deriveValue(r.Condition, sv)
	}
}

func (ld *loader) compileValue(r *Rule, sv *scopeVocab, n *yaml.Node) {
	c := &checker{sv: sv}
	prog, err := expr.Compile(r.Value, compileOptions(sv, expr.AsFloat64(), c)...)
	if err != nil {
		ld.exprError(n, r.Name, "value", err)
		return
	}
	if len(c.errs) > 0 {
		for _, e := range c.errs {
			line, col := offsetPos(r.Value, e.loc.From)
			line, col = ld.exprPos(n, line, col)
			ld.errAt(line, col, r.Name, "value: "+e.msg)
		}
		return
	}
	r.valueProg = prog
	r.addLookbacks(c.lookbacks, c.series)
}

// deriveValue compiles the left operand of the condition's first
// comparison (following the left side of and/or), the number the condition
// judges. It returns nil when there is none.
func deriveValue(cond string, sv *scopeVocab) *vm.Program {
	tree, err := parser.Parse(cond)
	if err != nil {
		return nil
	}
	node := tree.Node
	for {
		b, ok := node.(*ast.BinaryNode)
		if !ok {
			return nil
		}
		switch b.Operator {
		case "and", "&&", "or", "||":
			node = b.Left
			continue
		case "<", "<=", ">", ">=", "==", "!=":
			prog, err := expr.Compile(b.Left.String(), compileOptions(sv, expr.AsFloat64(), &checker{sv: sv})...)
			if err != nil {
				return nil
			}
			return prog
		}
		return nil
	}
}
