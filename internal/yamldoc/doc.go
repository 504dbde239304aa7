// Package yamldoc decodes input that must hold one YAML document (a config
// or rules file), and says where a gopkg.in/yaml.v3 syntax error is: the
// one place that reads yaml.v3's error text.
package yamldoc
