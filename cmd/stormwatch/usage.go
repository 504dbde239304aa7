package main

import (
	"strings"
	"text/template"

	"github.com/alecthomas/kingpin/v2"
)

// usageFuncs are the functions usageTemplate uses beyond kingpin's.
var usageFuncs = template.FuncMap{
	// OtherCommandsHelp lists "stormwatch CMD --help" for each command
	// but the default one and help.
	"OtherCommandsHelp": func(app *kingpin.ApplicationModel) string {
		var out []string
		for _, c := range app.Commands {
			if !c.Default && !c.Hidden && c.Name != "help" {
				out = append(out, app.Name+" "+c.Name+" --help")
			}
		}
		return strings.Join(out, ", ")
	},
}

// usageTemplate is kingpin's default usage template, with one addition:
// `stormwatch --help` (no command) also lists the flags of the default
// command, run, since `stormwatch` alone runs it, and says where the other
// commands' flags and the rest of the documentation are.
const usageTemplate = `{{define "FormatCommand" -}}
{{if .FlagSummary}} {{.FlagSummary}}{{end -}}
{{range .Args}}{{if not .Hidden}} {{if not .Required}}[{{end}}{{if .PlaceHolder}}{{.PlaceHolder}}{{else}}<{{.Name}}>{{end}}{{if .Value|IsCumulative}}...{{end}}{{if not .Required}}]{{end}}{{end}}{{end -}}
{{end -}}

{{define "FormatCommands" -}}
{{range .FlattenedCommands -}}
{{if not .Hidden -}}
  {{.FullCommand}}{{if .Default}}*{{end}}{{template "FormatCommand" .}}
{{.Help|Wrap 4}}
{{end -}}
{{end -}}
{{end -}}

{{define "FormatUsage" -}}
{{template "FormatCommand" .}}{{if .Commands}} <command> [<args> ...]{{end}}
{{if .Help}}
{{.Help|Wrap 0 -}}
{{end -}}

{{end -}}

{{if .Context.SelectedCommand -}}
usage: {{.App.Name}} {{.Context.SelectedCommand}}{{template "FormatUsage" .Context.SelectedCommand}}
{{ else -}}
usage: {{.App.Name}}{{template "FormatUsage" .App}}
{{end}}
{{if .Context.Flags -}}
Flags:
{{.Context.Flags|FlagsToTwoColumns|FormatTwoColumns}}
{{end -}}
{{if .Context.Args -}}
Args:
{{.Context.Args|ArgsToTwoColumns|FormatTwoColumns}}
{{end -}}
{{if .Context.SelectedCommand -}}
{{if len .Context.SelectedCommand.Commands -}}
Subcommands:
{{template "FormatCommands" .Context.SelectedCommand}}
{{end -}}
{{else if .App.Commands -}}
Commands:
{{template "FormatCommands" .App}}
{{range .App.Commands}}{{if .Default -}}
Flags of {{.Name}}, the default command ({{$.App.Name}} alone runs it):
{{.Flags|FlagsToTwoColumns|FormatTwoColumns}}
{{end}}{{end -}}
The other commands' flags: {{OtherCommandsHelp .App}}.
Files, signals, exit codes and HTTP endpoints: man {{.App.Name}}.
{{end -}}
`
