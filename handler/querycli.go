package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/parse"
	"github.com/kvaudit/kvaudit/internal/query"
)

const queryUsage = `usage: handler query events|stats|detections [flags]

Asks the index what GET /api/audit/events, /stats and /detections answer,
reading storage directly with the handler's settings (AuditIndexStorage or
AuditLogsStorage, AuditIndexTablePrefix, QueryMaxDays).

  handler query events -vault kv1 -from 2026-11-20T00:00:00Z -status 4xx
  handler query events -caller alice@contoso.com -all -o csv > alice.csv
  handler query stats -vault kv1 -by caller
  handler query detections -threshold 50 -o json

The flags are the API's parameters (see README.md, "Query API"), plus
  -o table|json|ndjson|csv   output (default: a table for terminals)
  -all                       events: follow continuations to the last page

Exit status: 0 answered, 1 storage or settings failed, 2 a flag is wrong.
`

// queryHelp documents each parameter as a flag.
var queryHelp = map[string]string{
	query.ParamVault:        "vault name (case-insensitive)",
	query.ParamCaller:       "caller objectId, UPN or appId",
	query.ParamIP:           "caller IP address (v4 or v6)",
	query.ParamObject:       "secret, key or certificate name",
	query.ParamFrom:         "start, RFC 3339, inclusive (default: 24 hours before -to)",
	query.ParamTo:           "end, RFC 3339, exclusive (default: now)",
	query.ParamOperation:    "operationName values, comma-separated",
	query.ParamStatus:       "HTTP status codes or classes, comma-separated (403,5xx)",
	query.ParamLimit:        "events per page (1–1000, default 100)",
	query.ParamContinuation: "the continuation the previous page printed",
	query.ParamBy:           "stats dimension: " + strings.Join(query.ByValues, ", ") + " (default operation)",
	query.ParamThreshold:    "mass retrieval: more successful gets than this in a day (default 25)",
	query.ParamSlowMs:       "slow requests: durationMs above this (default 1000)",
}

// runQuery implements `handler query events|stats|detections`.
func runQuery(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, queryUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	kind, args := args[0], args[1:]
	var params []string
	switch kind {
	case "events":
		params = query.EventsParams
	case "stats":
		params = query.StatsParams
	case "detections":
		params = query.DetectionsParams
	default:
		fmt.Fprintf(stderr, "handler query: unknown query %q\n%s", kind, queryUsage)
		return 2
	}
	fs := flag.NewFlagSet("query "+kind, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: handler query %s [flags]\n", kind)
		fs.PrintDefaults()
	}
	flags := map[string]*string{}
	for _, p := range params {
		help := queryHelp[p]
		if p == query.ParamLimit && kind == "stats" {
			help = "most groups answered (1–10000, default 1000)"
		}
		flags[p] = fs.String(p, "", help)
	}
	out := fs.String("o", "table", "output: table, json, ndjson or csv")
	all := false
	if kind == "events" {
		fs.BoolVar(&all, "all", false, "follow continuations to the last page")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "handler query %s: unexpected argument %q (parameters are flags: -vault NAME …)\n", kind, fs.Arg(0))
		return 2
	}
	if *out != "table" && !contains(formats, *out) {
		fmt.Fprintf(stderr, "handler query %s: -o %q: want table, json, ndjson or csv\n", kind, *out)
		return 2
	}
	v := url.Values{}
	fs.Visit(func(f *flag.Flag) {
		if p, ok := flags[f.Name]; ok {
			v.Set(f.Name, *p)
		}
	})

	a, ctx, cancel, ok := cliApp(stderr)
	if !ok {
		return 1
	}
	defer cancel()
	q := a.query.q
	w := bufio.NewWriterSize(stdout, 64<<10)
	err := q.CheckLayout(ctx)
	switch {
	case err != nil:
	case kind == "events":
		err = cliEvents(ctx, q, v, *out, all, w, stderr)
	case kind == "stats":
		var sq *query.StatsQuery
		if sq, err = query.ParseStats(v, time.Now(), q.Limits); err == nil {
			var st *query.Stats
			if st, err = q.Stats(ctx, sq); err == nil {
				err = cliStats(w, *out, st)
			}
		}
	case kind == "detections":
		var dq *query.DetectionsQuery
		if dq, err = query.ParseDetections(v, time.Now(), q.Limits); err == nil {
			var d *query.Detections
			if d, err = q.Detections(ctx, dq); err == nil {
				err = cliDetections(w, *out, d)
			}
		}
	}
	if ferr := w.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("write output: %w", ferr)
	}
	var pe *query.ParamError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &pe):
		fmt.Fprintf(stderr, "handler query %s: %s\n", kind, cliMessage(pe))
		return 2
	case errors.Is(err, query.ErrOldLayout):
		fmt.Fprintf(stderr, "handler query %s: %v\n", kind, err)
		return 1
	case azstore.IsTransient(err):
		fmt.Fprintf(stderr, "handler query %s: the index storage is unavailable or busy: %v\n", kind, err)
		return 1
	default:
		fmt.Fprintf(stderr, "handler query %s: %v\n", kind, err)
		return 1
	}
}

// cliMessage words a parameter error for flags: -vault, not vault.
func cliMessage(pe *query.ParamError) string {
	if pe.Param == "" {
		return pe.Msg
	}
	return "-" + pe.Param + ": " + pe.Msg
}

func cliEvents(ctx context.Context, q *query.Querier, v url.Values, format string, all bool, w io.Writer, stderr io.Writer) error {
	var ew eventWriter
	var tw *tabwriter.Writer
	if format == "table" {
		tw = tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		ew = &tableEvents{w: tw}
	} else {
		ew = newEventWriter(w, format)
	}
	now := time.Now() // one window for every page
	// Every page moves forward through a finite window; a token that comes
	// back unchanged would mean no progress, and stops the loop.
	for prev := ""; ; {
		eq, err := query.ParseEvents(v, now, q.Limits)
		if err != nil {
			return err
		}
		next, err := q.Events(ctx, eq, ew.event)
		if err != nil {
			return err
		}
		if tw != nil {
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		if next == "" || !all {
			if next != "" && format == "table" {
				fmt.Fprintf(stderr, "more events: repeat with -continuation %s (or -all)\n", next)
			}
			if format == "table" {
				next = ""
			}
			return ew.end(next)
		}
		if next == prev {
			return fmt.Errorf("the continuation did not advance (%s)", next)
		}
		prev = next
		v.Set(query.ParamContinuation, next)
	}
}

// tableEvents writes events as aligned columns for a terminal.
type tableEvents struct {
	w       *tabwriter.Writer
	started bool
}

func (t *tableEvents) event(rec *parse.Record) error {
	if !t.started {
		t.started = true
		fmt.Fprintln(t.w, "TIME\tVAULT\tOPERATION\tSTATUS\tCALLER\tIP\tOBJECT\tMS")
	}
	caller := rec.Identity.UPN
	if caller == "" {
		caller = rec.Identity.ObjectID
	}
	if caller == "" {
		caller = rec.Identity.AppID
	}
	ms := ""
	if rec.HasDuration {
		ms = strconv.FormatFloat(rec.DurationMs, 'f', -1, 64)
	}
	_, err := fmt.Fprintf(t.w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", parse.FormatTime(rec.Time), tcell(rec.Vault),
		tcell(rec.OperationName), rec.Status, tcell(caller), tcell(rec.CallerIPAddress), tcell(rec.ObjectName), ms)
	return err
}

func (t *tableEvents) end(string) error {
	if !t.started {
		fmt.Fprintln(t.w, "no events")
	}
	return t.w.Flush()
}

// tcell is a table cell: terminal-safe, no tabs, at most 48 characters.
func tcell(s string) string {
	s = strings.ReplaceAll(terminalSafe(s), "\t", " ")
	if r := []rune(s); len(r) > 48 {
		s = string(r[:47]) + "…"
	}
	return s
}

func cliStats(w io.Writer, format string, st *query.Stats) error {
	if format != "table" {
		return writeStats(w, format, st)
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tCOUNT\t\n", strings.ToUpper(st.By))
	for _, g := range st.Groups {
		fmt.Fprintf(tw, "%s\t%d\t\n", tcell(g.Key), g.Count)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	more := ""
	if st.OmittedGroups > 0 {
		more = fmt.Sprintf("; %d more groups (raise -limit)", st.OmittedGroups)
	}
	_, err := fmt.Fprintf(w, "total %d events from %s to %s (from %s, %d index rows read)%s\n",
		st.Total, st.From, st.To, st.Source, st.ScannedRows, more)
	return err
}

func cliDetections(w io.Writer, format string, d *query.Detections) error {
	if format != "table" {
		return writeDetections(w, format, d)
	}
	fmt.Fprintf(w, "detections from %s to %s (threshold %d, slowMs %g)\nvaults: %s\n", d.From, d.To, d.Threshold, d.SlowMs, strings.Join(d.Vaults, ", "))
	for _, k := range query.Kinds {
		fmt.Fprintf(w, "  %s: %d\n", k, d.Summary[k])
	}
	if len(d.Findings) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "\nKIND\tCOUNT\tCALLER\tIP\tVAULT\tWHAT\tFIRST\tLAST")
	for _, f := range d.Findings {
		what := f.Operation
		switch f.Kind {
		case query.KindMassRetrieval:
			what = "day " + f.Day + ", " + strconv.Itoa(len(f.Objects)) + " objects"
		case query.KindSensitiveOperation:
			what = strings.TrimSuffix(f.Operation+" "+f.Object, " ")
		case query.KindRefusedAccess:
			what = groupsCell(f.Statuses)
		case query.KindOldTLS:
			what = f.TLSVersion
		case query.KindSlowRequests:
			what = fmt.Sprintf("%s max %g ms avg %g ms", f.Operation, f.MaxDurationMs, f.AvgDurationMs)
		}
		vault := f.Vault
		if vault == "" {
			vault = groupsCell(f.Vaults)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Kind, f.Count, tcell(f.Caller), tcell(f.IP), tcell(vault), tcell(what), f.First, f.Last)
	}
	return tw.Flush()
}
