package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/catchup"
	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/funchost"
	"github.com/kvaudit/kvaudit/internal/index"
)

// catchUpTimer serves POST /CatchUp, the timer trigger. It indexes what
// grew in the recent hours and stops at a checkpoint once its budget is
// spent, leaving the rest to the next tick. Storage unreachable is a 503;
// a blob that fails is recorded and reported in Logs with 200.
func (a *app) catchUpTimer(w http.ResponseWriter, r *http.Request) {
	log := a.log.With(slog.String("invocation", r.Header.Get("X-Azure-Functions-InvocationId")), slog.String("function", "CatchUp"))
	if _, err := funchost.ReadInvocation(r.Body, maxMetadata); err != nil {
		log.Warn("unreadable timer invocation; running anyway", slog.String("error", err.Error()))
	}
	stopBy := time.Now().Add(a.settings.CatchUpBudget)
	rep, err := a.catchup.Run(r.Context(), stopBy)
	if err != nil {
		status := http.StatusInternalServerError
		if azstore.IsTransient(err) {
			status = http.StatusServiceUnavailable
		}
		log.Error("catch-up failed", slog.String("error", err.Error()))
		funchost.WriteResponse(w, status, funchost.Response{Logs: []string{"kvaudit catch-up failed: " + err.Error()}})
		return
	}
	log.Info("catch-up done", slog.Int("vaults", rep.Vaults), slog.Int("listed", rep.Listed), slog.Int("read", rep.Indexed),
		slog.Int64("records", rep.Records), slog.Int64("bad", rep.BadRecords), slog.Int64("tooOld", rep.TooOld), slog.Int("parked", rep.Parked),
		slog.Int("failed", rep.Failed), slog.Int("left", rep.Left))
	logs := append([]string{rep.Summary()}, rep.Errors...)
	// Every vault's recent days whose counts moved, the days of the blobs
	// read, and the alerts due for another attempt.
	arep := a.alerts.Sweep(r.Context(), a.settings.CatchUpHours, rep.IndexedBlobs)
	logs = append(logs, alertLogs(arep)...)
	if rep.Retention != nil {
		if n, err := a.alerts.Retain(r.Context(), rep.Retention.Cutoff); err != nil {
			log.Error("alert retention failed", slog.String("error", err.Error()))
		} else if n > 0 {
			logs = append(logs, fmt.Sprintf("kvaudit alerts: %d alert rows older than %s deleted", n, rep.Retention.Cutoff.Format("2006-01-02")))
		}
	}
	funchost.WriteResponse(w, http.StatusOK, funchost.Response{Logs: logs})
}

// status serves GET /api/audit/status: per logs account (and region) and
// per blob, offset, lag and errors of the recent hours. A blob's recorded
// error, and an account's listing error, are shown as catchup.ShortError:
// kvaudit's words, not the SDK's (URLs, responses, addresses); a failure
// to read is a short reason too. The log keeps every full text, and
// handler status prints the recorded ones.
func (a *app) status(w http.ResponseWriter, r *http.Request) {
	st, err := a.catchup.Status(r.Context())
	if err != nil {
		a.statusFailed(w, r, err)
		return
	}
	var lag int64
	for i := range st.Blobs {
		lag += st.Blobs[i].Lag
		st.Blobs[i].LastError = catchup.ShortError(st.Blobs[i].LastError)
	}
	for i := range st.Accounts {
		st.Accounts[i].Error = catchup.ShortError(st.Accounts[i].Error)
	}
	ans := map[string]any{"hours": a.settings.CatchUpHours, "lagBytes": lag, "accounts": st.Accounts, "blobs": st.Blobs, "layout": index.Layout}
	old, err := a.tables.LegacyRows(r.Context())
	if err != nil {
		a.statusFailed(w, r, err)
		return
	}
	if old {
		ans["rebuild"] = index.OldLayoutNotice
	}
	if ans["alerts"], err = a.alertStatus(r.Context()); err != nil {
		a.statusFailed(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

// statusFailed answers a status request whose storage reads failed with a
// short reason — 503 for storage unreachable, busy or refusing kvaudit's
// identity (naming the setting to check, never its value), 500 otherwise —
// and logs the whole error. A caller that went away gets nothing.
func (a *app) statusFailed(w http.ResponseWriter, r *http.Request, err error) {
	var ae *azstore.AuthError
	switch {
	case r.Context().Err() != nil:
		a.log.Debug("status: caller went away", slog.String("error", err.Error()))
	case errors.As(err, &ae):
		a.log.Error("status: storage refused access", slog.String("error", err.Error()))
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, "storage refused access or no token could be had; try again later. "+ae.Setting+": "+ae.Check)
	case azstore.IsTransient(err):
		a.log.Warn("status: storage unavailable", slog.String("error", err.Error()))
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, "storage (the logs or the index account) is unavailable or busy; try again later")
	default:
		a.log.Error("status failed", slog.String("error", err.Error()))
		writeError(w, http.StatusInternalServerError, "internal error; see the handler's log")
	}
}

// cliApp builds the app for a command-line tool: settings from the
// environment, no listener. Ctrl-C and SIGTERM cancel the context.
func cliApp(stderr io.Writer) (*app, context.Context, context.CancelFunc, bool) {
	s, err := config.Load()
	if err != nil {
		fmt.Fprintf(stderr, "handler: %v\n", err)
		return nil, nil, nil, false
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: max(s.LogLevel, slog.LevelWarn)}))
	a, err := newApp(s, log)
	if err != nil {
		fmt.Fprintf(stderr, "handler: %v\n", err)
		return nil, nil, nil, false
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	return a, ctx, cancel, true
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func parseDay(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02T15", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date: want YYYY-MM-DD, YYYY-MM-DDTHH or RFC 3339", s)
}

// runBackfill implements `handler backfill`.
func runBackfill(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("backfill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	since := fs.String("since", "", "first blob hour to index (YYYY-MM-DD[THH]); default: the retention window's start")
	until := fs.String("until", "", "index blob hours before this (YYYY-MM-DD[THH]); default: now")
	vault := fs.String("vault", "", "only this vault")
	prefix := fs.String("prefix", "", "only blobs under this path prefix (default resourceId=)")
	account := fs.String("account", "", "only this logs account (storage account name; default every one)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var opt catchup.BackfillOptions
	var err error
	if *since != "" {
		if opt.Since, err = parseDay(*since); err != nil {
			fmt.Fprintf(stderr, "handler backfill: -since: %v\n", err)
			return 2
		}
	}
	if *until != "" {
		if opt.Until, err = parseDay(*until); err != nil {
			fmt.Fprintf(stderr, "handler backfill: -until: %v\n", err)
			return 2
		}
	}
	opt.Vault, opt.Prefix, opt.Account = *vault, *prefix, *account
	a, ctx, cancel, ok := cliApp(stderr)
	if !ok {
		return 1
	}
	defer cancel()
	progress := newProgress(stderr)
	rep, err := a.catchup.Backfill(ctx, opt, progress.update)
	progress.done()
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "handler backfill: stopped; run it again to resume (%d records indexed so far)\n", rep.Records)
			return 130
		}
		fmt.Fprintf(stderr, "handler backfill: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%d blobs, %d records indexed, %d bad records skipped, %d failed\n", rep.Listed, rep.Records, rep.BadRecords, rep.Failed)
	for _, e := range rep.Errors {
		fmt.Fprintln(stderr, e)
	}
	if rep.LegacyDropped > 0 {
		fmt.Fprintf(stdout, "index rebuilt in row layout %d; the layout-1 lookup tables are deleted\n", index.Layout)
	}
	if rep.OldLayout > 0 {
		fmt.Fprintf(stderr, "handler backfill: %d blobs outside this backfill are still indexed in an older layout: run handler backfill without -since/-vault/-prefix\n", rep.OldLayout)
	}
	if rep.Failed > 0 {
		return 1
	}
	return 0
}

// progress prints backfill progress: a bar redrawn in place on a
// terminal, a plain line every few seconds otherwise.
type progress struct {
	w    io.Writer
	tty  bool
	last time.Time
	p    catchup.Progress
}

func newProgress(w io.Writer) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, tty: tty}
}

func (p *progress) update(pr catchup.Progress) {
	p.p = pr
	every := 5 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	if time.Since(p.last) < every && pr.Done < pr.Blobs {
		return
	}
	p.last = time.Now()
	elapsed := time.Since(pr.Started)
	if elapsed <= 0 {
		elapsed = time.Millisecond
	}
	rate := float64(pr.Records) / elapsed.Seconds()
	eta := "?"
	if pr.BytesDone > 0 {
		eta = (time.Duration(float64(elapsed) * float64(pr.Bytes-pr.BytesDone) / float64(pr.BytesDone))).Round(time.Second).String()
	}
	frac := 1.0
	if pr.Bytes > 0 {
		frac = float64(pr.BytesDone) / float64(pr.Bytes)
	}
	if p.tty {
		const width = 30
		bar := strings.Repeat("█", int(frac*width)) + strings.Repeat("░", width-int(frac*width))
		fmt.Fprintf(p.w, "\r%s %3.0f%% %d/%d blobs %s/%s %.0f records/s ETA %s ", bar, frac*100, pr.Done, pr.Blobs,
			mib(pr.BytesDone), mib(pr.Bytes), rate, eta)
		return
	}
	fmt.Fprintf(p.w, "backfill: %d/%d blobs, %s of %s, %d records, %.0f records/s, ETA %s\n", pr.Done, pr.Blobs,
		mib(pr.BytesDone), mib(pr.Bytes), pr.Records, rate, eta)
}

func (p *progress) done() {
	if p.tty && p.p.Blobs > 0 {
		fmt.Fprintln(p.w)
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// runRetention implements `handler retention`.
func runRetention(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("retention", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	a, ctx, cancel, ok := cliApp(stderr)
	if !ok {
		return 1
	}
	defer cancel()
	rep, err := a.catchup.Retain(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "handler retention: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "deleted %d index rows of days before %s (%s=%d)\n", rep.Deleted, rep.Cutoff.Format("2006-01-02"), config.SettingRetentionDays, a.settings.RetentionDays)
	return 0
}

// runStatus implements `handler status`.
func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "table", "output: table or json")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out != "table" && *out != "json" {
		fmt.Fprintf(stderr, "handler status: -o %q: want table or json\n", *out)
		return 2
	}
	a, ctx, cancel, ok := cliApp(stderr)
	if !ok {
		return 1
	}
	defer cancel()
	st, err := a.catchup.Status(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "handler status: %v\n", err)
		return 1
	}
	old, err := a.tables.LegacyRows(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "handler status: %v\n", err)
		return 1
	}
	if old {
		fmt.Fprintf(stderr, "handler status: %s\n", index.OldLayoutNotice)
	}
	alerts, err := a.alertStatus(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "handler status: alerts: %v\n", err)
		return 1
	}
	if *out == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"accounts": st.Accounts, "blobs": st.Blobs, "alerts": alerts})
		return 0
	}
	defer printAlertStatus(stdout, alerts)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tREGION\tVAULTS\tBLOBS\tLAG\tFAILING\tPARKED\tERROR")
	for _, ac := range st.Accounts {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", ac.Account, orDash(ac.Region), ac.Vaults, ac.Blobs, ac.LagBytes, ac.Failing, ac.Parked, ac.Error)
	}
	_ = tw.Flush()
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOUR\tACCOUNT\tVAULT\tLENGTH\tOFFSET\tLAG\tRECORDS\tBAD\tTOO OLD\tTRIES\tERROR")
	for _, b := range st.Blobs {
		vault := b.Blob
		if i := strings.Index(strings.ToUpper(vault), "/VAULTS/"); i >= 0 {
			vault, _, _ = strings.Cut(vault[i+len("/VAULTS/"):], "/")
		}
		errText := b.LastError
		if b.Parked {
			errText = "parked: " + errText
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", b.Hour.Format("2006-01-02T15"), b.Account, strings.ToLower(vault),
			b.Length, b.Offset, b.Lag, b.Records, b.BadRecords, b.TooOld, b.Tries, errText)
	}
	_ = tw.Flush()
	return 0
}
