package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kvaudit/kvaudit/internal/alert"
	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/query"
)

const pathAlerts = apiPrefix + "alerts"

// newAlerts builds the alert engine from the settings: the tuning and
// each configured sink. No I/O; a bad setting is an error naming it.
func newAlerts(s *config.Settings, tables *index.Tables, log *slog.Logger) (*alert.Engine, error) {
	tuning, err := alert.ParseTuning(s.Alerts.Tuning)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", config.SettingAlertTuning, err)
	}
	var sinks []alert.Sink
	if s.Alerts.WebhookURL != "" {
		w, err := alert.NewWebhook(s.Alerts.WebhookURL, s.Alerts.WebhookSecret)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", config.SettingAlertWebhookSecret, err)
		}
		sinks = append(sinks, w)
	}
	if s.Alerts.TeamsURL != "" {
		sinks = append(sinks, alert.NewTeams(s.Alerts.TeamsURL))
	}
	if s.Alerts.EventGridTopic != "" {
		cred, err := alert.EventGridCredential(s.Alerts.EventGridClientID)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", config.SettingAlertEventGridClient, err)
		}
		g, err := alert.NewEventGrid(s.Alerts.EventGridTopic, cred, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", config.SettingAlertEventGridTopic, err)
		}
		sinks = append(sinks, g)
	}
	return &alert.Engine{
		Querier: &query.Querier{Tables: tables, Limits: query.Limits{MaxDays: s.QueryMaxDays}},
		Store:   alert.NewStore(tables),
		Sinks:   sinks,
		Tuning:  tuning,
		Log:     log,
		PageURL: s.Alerts.PageURL,
	}, nil
}

// alertLogs is what an invocation's Logs say of its alerts: nothing when
// nothing happened.
func alertLogs(rep alert.Report) []string {
	if rep.Evaluated == 0 && rep.Alerts == 0 && rep.Delivered+rep.Retrying+rep.Undelivered == 0 && len(rep.Errors) == 0 {
		return nil
	}
	logs := []string{rep.Summary()}
	for i, e := range rep.Errors {
		if i == 5 {
			logs = append(logs, fmt.Sprintf("… and %d more alert errors (see the structured log)", len(rep.Errors)-5))
			break
		}
		logs = append(logs, "kvaudit alerts: "+e)
	}
	return logs
}

// alertView is one alert as the API and the page show it.
type alertView struct {
	ID         string                      `json:"id"`
	Kind       string                      `json:"kind"`
	Severity   string                      `json:"severity"`
	Vault      string                      `json:"vault"`
	Window     string                      `json:"window"`
	Title      string                      `json:"title"`
	State      string                      `json:"state"`
	DetectedAt string                      `json:"detectedAt"`
	UpdatedAt  string                      `json:"updatedAt"`
	NextAt     string                      `json:"nextAttempt,omitempty"`
	Link       string                      `json:"link,omitempty"`
	Sinks      map[string]*alert.SinkState `json:"sinks"`
	Finding    *query.Finding              `json:"finding,omitempty"`
}

func viewOf(r *alert.Record, withFinding bool) alertView {
	v := alertView{ID: r.RowKey, Kind: r.Kind, Severity: r.Severity, Vault: r.Vault, Window: r.Window, State: r.State,
		DetectedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, NextAt: r.NextAt, Sinks: r.SinkStates()}
	if a, err := r.Alert(); err == nil {
		v.Title, v.Link = a.Title, a.Link
		if withFinding {
			f := a.Finding
			v.Finding = &f
		}
	}
	return v
}

// alertStatus is the alerts part of status: where alerts go, the tuning,
// and what was not delivered in the last days. Secrets are never in it:
// sinks show scheme and host.
func (a *app) alertStatus(ctx context.Context) (map[string]any, error) {
	now := time.Now().UTC()
	from := now.Add(-7 * 24 * time.Hour)
	rs, more, err := a.alerts.Store.List(ctx, alert.ListOptions{From: from, To: now,
		States: []string{alert.StateUndelivered, alert.StateRetrying, alert.StateClaimed}, Limit: 100})
	if err != nil {
		return nil, err
	}
	sinks := []map[string]string{}
	for _, s := range a.alerts.Sinks {
		sinks = append(sinks, map[string]string{"name": s.Name(), "target": s.Target()})
	}
	counts := map[string]int{}
	recent := []alertView{}
	for _, r := range rs {
		counts[r.State]++
		recent = append(recent, viewOf(r, false))
	}
	return map[string]any{
		"sinks": sinks, "kinds": a.alerts.Tuning.Summary(), "since": from.Format(time.RFC3339),
		"undelivered": counts[alert.StateUndelivered], "retrying": counts[alert.StateRetrying], "inProgress": counts[alert.StateClaimed],
		"notDelivered": recent, "truncated": more,
	}, nil
}

var vaultName = regexp.MustCompile(`^[A-Za-z0-9-]{1,127}$`)

var alertStates = []string{alert.StateClaimed, alert.StateRetrying, alert.StateDelivered, alert.StateUndelivered, alert.StateRecorded}

// alertsAPI serves GET /api/audit/alerts: the alerts of a window (by the
// day of what they are about), newest first, with their delivery state.
// Parameters: vault, from, to (RFC 3339; default the last 24 hours, at
// most QueryMaxDays), state (comma-separated).
func (a *app) alertsAPI(w http.ResponseWriter, r *http.Request) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "the query string is not valid URL encoding: "+err.Error())
		return
	}
	for name, vs := range v {
		switch {
		case !contains([]string{"vault", "from", "to", "state"}, name):
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown parameter %q: alerts takes vault, from, to, state", truncateText(name, 40)))
			return
		case len(vs) != 1:
			writeError(w, http.StatusBadRequest, fmt.Sprintf("parameter %q given %d times", name, len(vs)))
			return
		}
	}
	opt := alert.ListOptions{Limit: 1000}
	if s := v.Get("vault"); s != "" {
		if !vaultName.MatchString(s) {
			writeError(w, http.StatusBadRequest, "vault: want a vault name: letters, digits and hyphens")
			return
		}
		opt.Vault = strings.ToLower(s)
	}
	now := time.Now().UTC()
	to, from := now, now.Add(-24*time.Hour)
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &from}, {"to", &to}} {
		if s := v.Get(p.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("%s: want an RFC 3339 instant, such as 2026-11-20T10:00:00Z, got %q", p.name, truncateText(s, 64)))
				return
			}
			*p.dst = t.UTC()
		}
	}
	if v.Get("from") == "" && v.Get("to") != "" {
		from = to.Add(-24 * time.Hour)
	}
	if !to.After(from) {
		writeError(w, http.StatusBadRequest, "to: want to after from")
		return
	}
	if to.Sub(from) > time.Duration(a.settings.QueryMaxDays)*24*time.Hour {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("from, to: the window is longer than %s=%d days", config.SettingQueryMaxDays, a.settings.QueryMaxDays))
		return
	}
	if s := v.Get("state"); s != "" {
		for _, st := range strings.Split(s, ",") {
			if !contains(alertStates, st) {
				writeError(w, http.StatusBadRequest, "state: want some of "+strings.Join(alertStates, ", "))
				return
			}
			opt.States = append(opt.States, st)
		}
	}
	opt.From, opt.To = from, to.Add(-time.Nanosecond)
	rs, more, err := a.alerts.Store.List(r.Context(), opt)
	if err != nil {
		a.query.fail(w, r, err)
		return
	}
	out := []alertView{}
	for _, rec := range rs {
		out = append(out, viewOf(rec, true))
	}
	sinks := []string{}
	for _, s := range a.alerts.Sinks {
		sinks = append(sinks, s.Name())
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"from": from.Format(time.RFC3339Nano), "to": to.Format(time.RFC3339Nano),
		"alerts": out, "truncated": more, "sinks": sinks,
	})
}

// printAlertStatus prints the alerts part of handler status.
func printAlertStatus(w io.Writer, st map[string]any) {
	fmt.Fprintln(w)
	sinks, _ := st["sinks"].([]map[string]string)
	var names []string
	for _, s := range sinks {
		names = append(names, s["name"]+" → "+s["target"])
	}
	if len(names) == 0 {
		names = []string{"none configured (alerts are recorded, not sent)"}
	}
	fmt.Fprintf(w, "ALERTS  sinks: %s\n", strings.Join(names, ", "))
	fmt.Fprintf(w, "since %s: %d undelivered, %d retrying, %d in progress\n", st["since"], st["undelivered"], st["retrying"], st["inProgress"])
	recent, _ := st["notDelivered"].([]alertView)
	if len(recent) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DETECTED\tSTATE\tKIND\tVAULT\tWINDOW\tSINK\tATTEMPTS\tREASON")
	for _, v := range recent {
		for name, s := range v.Sinks {
			if s.State == "delivered" {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", v.DetectedAt, v.State, v.Kind, v.Vault, v.Window, name, s.Attempts, sanitize(s.Error))
		}
	}
	_ = tw.Flush()
}

// sanitize drops control characters before text reaches a terminal.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, s)
}
