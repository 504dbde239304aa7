package yamldoc

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Doc is a decoded document and what follows it.
type Doc struct {
	// Root is the first document's node (a DocumentNode).
	Root yaml.Node
	// Extra is the node of a second document, when the input holds one:
	// its caller's error, at that node's position.
	Extra *yaml.Node
	// RestErr is the syntax error met decoding after the first document.
	RestErr error
}

// Decode decodes data's first document, and looks for a second. Its error
// is the first document's: io.EOF for empty input, else a syntax error
// (see Syntax).
func Decode(data []byte) (*Doc, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	d := &Doc{}
	if err := dec.Decode(&d.Root); err != nil {
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.Extra = &extra
	} else if !errors.Is(err, io.EOF) {
		d.RestErr = err
	}
	return d, nil
}

var lineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Syntax returns the line of a yaml.v3 syntax error (0 when it names
// none) and its message without the "yaml: " and line prefixes.
func Syntax(err error) (line int, msg string) {
	if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		return line, m[2]
	}
	return 0, strings.TrimPrefix(err.Error(), "yaml: ")
}
