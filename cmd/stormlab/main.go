//go:build linux

// Command stormlab runs a TCP connection storm in a fresh network namespace
// and prints what happened, or benchmarks stormwatch against its
// references.
//
//	stormlab accept-queue|syn-flood|conntrack|reconnect|churn [flags]
//	stormlab bench [flags]
//
// It needs root. See internal/stormlab for what each scenario does.
package main

import (
	"os"

	"github.com/stormwatch/stormwatch/internal/stormlab"
)

func main() {
	// Workers are this binary re-executed inside the namespace.
	stormlab.RunWorkerIfRequested()
	os.Exit(run(os.Args[1:]))
}
