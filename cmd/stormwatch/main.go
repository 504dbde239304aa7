// Command stormwatch watches a Linux host's connection queues for TCP
// connection storms. See README.md.
package main

import "os"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }
