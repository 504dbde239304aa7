package main

import (
	"encoding"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/stormwatch/stormwatch/internal/errtext"
	"github.com/stormwatch/stormwatch/internal/yamldoc"
)

// The config file is decoded by walking its YAML nodes against the Go type
// it fills, so that every problem is reported with its line and column, and
// all of them at once: yaml.v3's KnownFields gives the line of the first
// unknown field only ("line 1: field x not found in type main.fileConfig"),
// and no column. A new section of the config file is one struct field:
// the walker handles structs, pointers, lists, string-keyed maps, scalars
// (durations included), and any type with its own yaml.Unmarshaler or
// encoding.TextUnmarshaler — such a type's error is reported at its node.
// A field written with no value (`key:` or `key: ~`) keeps its default.

// maxConfigNodes bounds the nodes one decode visits, aliases expanded: a
// file of nested aliases ("billion laughs") fails instead of expanding.
const maxConfigNodes = 100_000

// maxConfigErrorsKept bounds the errors kept in memory; more are counted.
const maxConfigErrorsKept = 1000

// configError is one problem in the config file, at the line and column
// (1-based; 0 when unknown) of the YAML node it concerns.
type configError struct {
	File   string
	Line   int
	Column int
	// Field is the path of the field, like "rule_files[1]", empty for the
	// file as a whole.
	Field string
	Msg   string
	// Err is the cause, when a problem wraps one (a rules file that is a
	// FIFO: fileread.ErrNotRegular), for errors.Is.
	Err error
}

// Unwrap returns the cause, if any.
func (e *configError) Unwrap() error { return e.Err }

// Error formats e as "file:line:col: field: msg", leaving out what is
// unknown, in at most errtext.MaxErrorLen bytes.
func (e *configError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return errtext.Truncate(b.String(), errtext.MaxErrorLen)
}

// configErrors is every problem found in the config file and the rules
// files it names.
type configErrors struct {
	list    []error
	omitted int // problems past maxConfigErrorsKept, counted only
}

func (es *configErrors) add(err error) {
	if len(es.list) < maxConfigErrorsKept {
		es.list = append(es.list, err)
	} else {
		es.omitted++
	}
}

// len is how many problems were found.
func (es *configErrors) len() int { return len(es.list) + es.omitted }

// err returns es as an error, or nil when there is no problem.
func (es *configErrors) err() error {
	if es.len() == 0 {
		return nil
	}
	return es
}

// Error lists the first errtext.MaxErrors problems, one per line, then
// "… and N more".
func (es *configErrors) Error() string {
	shown := es.list[:min(len(es.list), errtext.MaxErrors)]
	s := errtext.Join(shown, "\n", errtext.MaxErrors, errtext.MaxErrorLen)
	if more := es.len() - len(shown); more > 0 {
		s += "\n… and " + errtext.Count(more) + " more"
	}
	return s
}

// Unwrap returns the problems kept, for errors.Is and errors.As.
func (es *configErrors) Unwrap() []error { return es.list }

// position is where a node is in the file.
type position struct{ line, col int }

// configDoc is a decoded config file: where each field was, for the
// problems found after decoding (a rule that does not exist, a glob that
// matches nothing), and the problems.
type configDoc struct {
	file string
	pos  map[string]position // field path → position of its value
	errs configErrors
}

// errorf records a problem with the field at path, at its position. An
// error argument formatted with %w stays matchable with errors.Is.
func (d *configDoc) errorf(path, format string, args ...any) {
	p := d.pos[path]
	err := fmt.Errorf(format, args...)
	d.errs.add(&configError{File: d.file, Line: p.line, Column: p.col, Field: path, Msg: err.Error(), Err: errors.Unwrap(err)})
}

func (d *configDoc) errAt(n *yaml.Node, path, format string, args ...any) {
	e := &configError{File: d.file, Field: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs.add(e)
}

// fieldHinter is implemented by config structs that answer common
// mistakes: field name → what to write instead.
type fieldHinter interface {
	fieldHints() map[string]string
}

var (
	yamlUnmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	durationType        = reflect.TypeFor[time.Duration]()
	yamlTypeErrorRE     = regexp.MustCompile(`^line \d+: `)
)

// decodeConfig decodes data, one YAML document, into out (a pointer to a
// struct holding its defaults), strictly: unknown and repeated fields,
// values of the wrong type and a second document are problems, each
// recorded in the returned configDoc with its line and column.
func decodeConfig(file string, data []byte, out any) *configDoc {
	doc := &configDoc{file: file, pos: map[string]position{}}
	d, err := yamldoc.Decode(data)
	if err != nil {
		if !errors.Is(err, io.EOF) { // EOF: an empty file, all defaults
			doc.syntaxError(err)
		}
		return doc
	}
	if d.Extra != nil {
		doc.errAt(d.Extra, "", "only one YAML document is allowed")
	} else if d.RestErr != nil {
		doc.syntaxError(d.RestErr)
	}
	n := &d.Root
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return doc
		}
		n = n.Content[0]
	}
	w := &walker{doc: doc, budget: maxConfigNodes}
	w.value(n, reflect.ValueOf(out).Elem(), "")
	return doc
}

func (d *configDoc) syntaxError(err error) {
	line, msg := yamldoc.Syntax(err)
	d.errs.add(&configError{File: d.file, Line: line, Msg: "syntax error: " + msg})
}

type walker struct {
	doc    *configDoc
	budget int
}

// value decodes node n into v, the field at path.
func (w *walker) value(n *yaml.Node, v reflect.Value, path string) {
	for i := 0; n.Kind == yaml.AliasNode && i < 32; i++ {
		n = n.Alias
	}
	if w.budget--; w.budget < 0 {
		if w.budget == -1 {
			w.doc.errAt(n, path, "too many YAML nodes (over %s, aliases expanded)", errtext.Count(maxConfigNodes))
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		w.doc.errAt(n, path, "aliases nested too deep")
		return
	}
	w.doc.pos[path] = position{n.Line, n.Column}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // no value: the default stays
	}
	if v.CanAddr() && (v.Addr().Type().Implements(yamlUnmarshalerType) || v.Addr().Type().Implements(textUnmarshalerType)) {
		w.custom(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		elem := reflect.New(v.Type().Elem())
		if !v.IsNil() {
			elem.Elem().Set(v.Elem())
		}
		w.value(n, elem.Elem(), path)
		v.Set(elem)
	case reflect.Struct:
		w.structure(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			if n.Kind == yaml.ScalarNode {
				w.doc.errAt(n, path, "%s is not a list; write [%s]", quote(n.Value), strconv.Quote(n.Value))
			} else {
				w.doc.errAt(n, path, "want %s, not %s", describe(v.Type()), nodeKind(n))
			}
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			w.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			panic(fmt.Sprintf("config field %s: map keys must be strings", path))
		}
		if n.Kind != yaml.MappingNode {
			w.doc.errAt(n, path, "want %s, not %s", describe(v.Type()), nodeKind(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		first := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if !w.key(k, path, first) {
				continue
			}
			elem := reflect.New(v.Type().Elem()).Elem()
			w.value(val, elem, join(path, k.Value))
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
		}
		v.Set(m)
	default:
		w.scalar(n, v, path)
	}
}

// key checks a mapping key: a string, not a merge key, not repeated.
func (w *walker) key(k *yaml.Node, path string, first map[string]*yaml.Node) bool {
	if k.Kind != yaml.ScalarNode {
		w.doc.errAt(k, path, "field names must be strings, not %s", nodeKind(k))
		return false
	}
	if k.Value == "<<" && k.ShortTag() == "!!merge" {
		w.doc.errAt(k, path, "merge keys (<<) are not supported")
		return false
	}
	if prev, dup := first[k.Value]; dup {
		w.doc.errAt(k, join(path, k.Value), "repeated (first at %d:%d)", prev.Line, prev.Column)
		return false
	}
	first[k.Value] = k
	return true
}

// structure decodes a mapping into the struct v, field by field.
func (w *walker) structure(n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	fields := yamlFields(t)
	if n.Kind != yaml.MappingNode {
		w.doc.errAt(n, path, "want %s, not %s", describe(t), nodeKind(n))
		return
	}
	var hints map[string]string
	if h, ok := v.Addr().Interface().(fieldHinter); ok {
		hints = h.fieldHints()
	}
	first := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if !w.key(k, path, first) {
			continue
		}
		idx := slices.IndexFunc(fields, func(f yamlField) bool { return f.name == k.Value })
		if idx < 0 {
			w.doc.errAt(k, path, "%s", unknownField(k.Value, fields, hints))
			continue
		}
		w.value(val, v.FieldByIndex(fields[idx].index), join(path, k.Value))
	}
}

// unknownField says a field is unknown, suggesting the nearest known one.
func unknownField(name string, fields []yamlField, hints map[string]string) string {
	msg := fmt.Sprintf("unknown field %s", quote(name))
	if h, ok := hints[name]; ok {
		return msg + ": " + h
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	if near := nearest(name, names); near != "" {
		return fmt.Sprintf("%s; did you mean %q?", msg, near)
	}
	return fmt.Sprintf("%s (known fields: %s)", msg, strings.Join(names, ", "))
}

// custom decodes v with its own UnmarshalYAML or UnmarshalText.
func (w *walker) custom(n *yaml.Node, v reflect.Value, path string) {
	p := reflect.New(v.Type())
	p.Elem().Set(v)
	if err := n.Decode(p.Interface()); err != nil {
		w.doc.errAt(n, path, "%s", cleanTypeError(err))
		return
	}
	v.Set(p.Elem())
}

// scalar decodes a bool, number, string or duration.
func (w *walker) scalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		w.doc.errAt(n, path, "want %s, not %s", describe(v.Type()), nodeKind(n))
		return
	}
	p := reflect.New(v.Type())
	if err := n.Decode(p.Interface()); err != nil {
		w.doc.errAt(n, path, "%s is not %s", quote(n.Value), describe(v.Type()))
		return
	}
	v.Set(p.Elem())
}

// yamlField is a struct field with the name it has in YAML.
type yamlField struct {
	name  string
	index []int
}

// yamlFields lists the exported fields of struct type t by their yaml tag
// (the Go name lowercased without one; "-" leaves a field out).
func yamlFields(t reflect.Type) []yamlField {
	var out []yamlField
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out = append(out, yamlField{name, f.Index})
	}
	return out
}

// describe says what a value of type t is written as.
func describe(t reflect.Type) string {
	if t == durationType {
		return "a duration (e.g. 30s)"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return describe(t.Elem())
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number ≥ 0"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "a list of " + pluralOf(describe(t.Elem()))
	case reflect.Map:
		return "a mapping of names to " + pluralOf(describe(t.Elem()))
	case reflect.Struct:
		var names []string
		for _, f := range yamlFields(t) {
			names = append(names, f.name)
		}
		return "a mapping with the fields " + strings.Join(names, ", ")
	}
	return t.String()
}

// pluralOf turns "a string" into "strings", "a duration (e.g. 30s)" into
// "durations (e.g. 30s)".
func pluralOf(s string) string {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "a "), "an ")
	word, rest, _ := strings.Cut(s, " ")
	if rest != "" {
		rest = " " + rest
	}
	if strings.HasSuffix(word, "s") {
		return word + "es" + rest
	}
	return word + "s" + rest
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return quote(n.Value)
	}
	return "an alias"
}

// quote quotes a value from the file for a message, cut to a readable
// length.
func quote(s string) string { return strconv.Quote(errtext.Truncate(s, 64)) }

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// cleanTypeError drops yaml.v3's "yaml: unmarshal errors:\n  line N: "
// wrapping: the caller gives the position itself.
func cleanTypeError(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return yamlTypeErrorRE.ReplaceAllString(te.Errors[0], "")
	}
	return err.Error()
}

// nearest returns the candidate closest to name in edit distance, if it is
// close enough to be a typo: at most a third of the name's length (at least
// one edit), or a candidate that differs only by case or separators.
func nearest(name string, candidates []string) string {
	best, bestDist := "", -1
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "", ".", "").Replace(strings.ToLower(s))
	}
	for _, c := range candidates {
		if norm(c) == norm(name) {
			return c
		}
		d := editDistance(name, c)
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	if bestDist >= 0 && bestDist <= max(1, len([]rune(name))/3) {
		return best
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b, in runes, with
// a transposition of two neighbours counting as one edit.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 256 || len(rb) > 256 {
		return max(len(ra), len(rb)) // no typo of a known field is that long
	}
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
