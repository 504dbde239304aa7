// Package errtext bounds the text of errors before it reaches a log line,
// an HTTP answer or a terminal.
//
// An error built from user input can be as long as the input (a 50 MB
// field name) and as many as its mistakes (10,000 bad rules). Truncate cuts
// one message at a rune boundary and says how much was left out; Join lists
// at most a given number of errors and ends with "… and 9,990 more"
// (calling Error only on those it shows); OneLine turns any error, multi-line
// ones from errors.Join included, into one line for a structured log, parts
// joined with "; " and capped in length.
//
// The package formats text only: it never logs.
package errtext
