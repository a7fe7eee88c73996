// Command handler is kvaudit: an Azure Functions custom handler that
// indexes Key Vault audit logs into Azure Table Storage, and the command
// line tools around it.
//
//	handler [serve] [-port N]   serve the Functions host (the default)
//	handler parse [FILE…|-]     print normalized records as NDJSON
//
// This package is wiring: it reads settings, builds clients, registers
// routes and serves; the work is done by the internal packages.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage:
  handler [serve] [-port N] [-addr HOST]   serve the Azure Functions host (default)
  handler parse [FILE…|-]                  print normalized records as NDJSON
  handler query events|stats|detections …  ask the index (see handler query -h)
  handler backfill [-since DATE] [-until DATE] [-vault NAME] [-prefix P] [-account A]
                                           index blobs that existed before kvaudit
  handler retention                        delete index days older than RetentionDays
  handler status [-o json]                 per account and blob: offset, lag, errors of recent hours
  handler help, handler -h, handler --help this text

Settings come from the environment (app settings); see README.md.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	switch {
	case len(args) > 0 && isHelp(args[0]):
		// Before serve's flags: "handler -h" asks about the handler, not
		// about serve, the default command.
		cmd = "help"
	case len(args) > 0 && (len(args[0]) == 0 || args[0][0] != '-'):
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return runServe(args, stderr)
	case "parse":
		return runParse(args, stdin, stdout, stderr)
	case "query":
		return runQuery(args, stdout, stderr)
	case "backfill":
		return runBackfill(args, stdout, stderr)
	case "retention":
		return runRetention(args, stdout, stderr)
	case "status":
		return runStatus(args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "handler: unknown command %q\n%s", cmd, usage)
		return 2
	}
}

// isHelp reports whether arg asks for help the ways the flag package and
// most tools accept: -h, -help, --h, --help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--h", "--help":
		return true
	}
	return false
}
