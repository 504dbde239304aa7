package yamldoc

import (
	"errors"
	"io"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestDecode(t *testing.T) {
	if _, err := Decode(nil); !errors.Is(err, io.EOF) {
		t.Errorf("empty input: %v, want io.EOF", err)
	}
	d, err := Decode([]byte("a: 1\n"))
	if err != nil || d.Extra != nil || d.RestErr != nil || d.Root.Kind != yaml.DocumentNode {
		t.Errorf("one document: %+v, %v", d, err)
	}
	d, err = Decode([]byte("a: 1\n---\nb: 2\n"))
	if err != nil || d.Extra == nil || d.Extra.Line != 2 {
		t.Errorf("two documents: extra %+v, %v; want the second at its separator, line 2", d.Extra, err)
	}
	d, err = Decode([]byte("a: 1\n---\nb: [\n"))
	if err != nil || d.Extra != nil || d.RestErr == nil {
		t.Errorf("a broken second document: %+v, %v; want RestErr", d, err)
	}
	_, err = Decode([]byte("a: [\n"))
	line, msg := Syntax(err)
	if line != 1 || msg != "did not find expected node content" {
		t.Errorf("Syntax(%v) = %d, %q", err, line, msg)
	}
	if line, msg := Syntax(errors.New("yaml: control characters are not allowed")); line != 0 || msg != "control characters are not allowed" {
		t.Errorf("Syntax without a line = %d, %q", line, msg)
	}
}
