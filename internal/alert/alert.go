package alert

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kvaudit/kvaudit/internal/query"
)

// Alert is one finding as it is delivered and kept. Every string that
// came from the logs is cut to maxText and every list to maxList
// entries, so an alert's size is bounded whatever callers write in their
// User-Agent or object names (a Teams card is refused past 28 KB, an
// Event Grid event past 1 MB, a table property past 64 KiB).
type Alert struct {
	// ID is the finding's stable id (see FindingID): the CloudEvents id,
	// the webhook-id and the state table's RowKey.
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	Severity string `json:"severity"`
	Vault    string `json:"vault"`
	// Window is the unit the finding is about: a UTC day "2026-11-20", or
	// for an hourly anomaly an hour "2026-11-20T10".
	Window string `json:"window"`
	// Subject says what, within kind and vault, the finding is about.
	Subject string `json:"subject"`
	// Title is one line saying what happened.
	Title string `json:"title"`
	// DetectedAt is when kvaudit first claimed the finding (RFC 3339).
	DetectedAt string `json:"detectedAt"`
	// Link opens the web page on the finding's events (without the
	// function key: the page asks for it).
	Link    string        `json:"link,omitempty"`
	Finding query.Finding `json:"finding"`
}

// Bounds of an alert's text from the logs.
const (
	maxText = 256
	maxList = 10
)

// FindingID is the stable id of a finding: the first 128 bits of SHA-256
// over kind, vault, subject and window, hex. The same finding found again
// — a blob read twice, a retried invocation, four instances at once, a
// later evaluation of the same day — has the same id; a hash keeps the
// id's length fixed and its characters legal in a RowKey and a
// webhook-id (no '.', which Standard Webhooks forbids there) whatever
// the logged names hold.
func FindingID(kind, vault, subject, window string) string {
	h := sha256.New()
	for _, s := range []string{kind, vault, subject, window} {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	return "kva_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// subjectOf says what a finding of its kind is about, and its window: the
// key fields query groups it by, and the UTC day (the hour of an hourly
// anomaly). day is the evaluated day, for kinds whose findings carry none.
func subjectOf(f *query.Finding, day string) (subject, window string) {
	window = day
	if f.Day != "" {
		window = f.Day
	}
	j := func(parts ...string) string { return strings.Join(parts, "|") }
	switch f.Kind {
	case query.KindMassRetrieval:
		subject = f.Caller
	case query.KindSensitiveOperation:
		subject = j(f.Operation, f.Caller, f.IP, f.Object)
	case query.KindRefusedAccess:
		subject = j(f.Caller, f.IP)
	case query.KindOldTLS:
		subject = j(f.TLSVersion, f.Caller, f.IP)
	case query.KindSlowRequests:
		subject = f.Operation
	case query.KindAccessAnomaly:
		series := ""
		if f.Anomaly != nil {
			series = f.Anomaly.Series
			if series == query.SeriesHour && len(f.Anomaly.Start) >= 13 {
				window = f.Anomaly.Start[:13]
			}
		}
		subject = j(series, f.Caller)
	default:
		subject = j(f.Caller, f.IP, f.Operation, f.Object)
	}
	return subject, window
}

// cut bounds s to maxText bytes on a rune boundary, marking a cut.
func cut(s string) string {
	if len(s) <= maxText {
		return s
	}
	i := maxText - len("…")
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func cutGroups(gs []query.Group) []query.Group {
	if len(gs) > maxList {
		gs = gs[:maxList]
	}
	out := make([]query.Group, len(gs))
	for i, g := range gs {
		out[i] = query.Group{Key: cut(g.Key), Count: g.Count}
	}
	return out
}

// bounded is f with every logged string cut and every list shortened.
func bounded(f query.Finding) query.Finding {
	for _, s := range []*string{&f.Caller, &f.IP, &f.Vault, &f.Operation, &f.Object, &f.TLSVersion} {
		*s = cut(*s)
	}
	for _, l := range []*[]query.Group{&f.Vaults, &f.Objects, &f.IPs, &f.ClientInfos, &f.Operations, &f.Statuses} {
		if *l != nil {
			*l = cutGroups(*l)
		}
	}
	return f
}

// newAlert builds the alert of finding f of vault found on day.
func newAlert(f query.Finding, vault, day, severity, pageURL string, now time.Time) *Alert {
	subject, window := subjectOf(&f, day)
	a := &Alert{
		ID: FindingID(f.Kind, vault, subject, window), Kind: f.Kind, Severity: severity,
		Vault: vault, Window: window, Subject: cut(subject), DetectedAt: now.UTC().Format(time.RFC3339),
		Finding: bounded(f),
	}
	if a.Finding.Vault == "" {
		a.Finding.Vault = vault
	}
	a.Title = title(&a.Finding, vault, window)
	a.Link = link(pageURL, &a.Finding, vault)
	return a
}

// who names a finding's caller for a title.
func who(f *query.Finding) string {
	if f.Caller == "" || f.Caller == "-" {
		return "an unidentified caller"
	}
	return f.Caller
}

// title says what happened in one line.
func title(f *query.Finding, vault, window string) string {
	switch f.Kind {
	case query.KindMassRetrieval:
		return fmt.Sprintf("Mass secret retrieval: %d successful gets by %s in %s on %s", f.Count, who(f), vault, window)
	case query.KindSensitiveOperation:
		obj := ""
		if f.Object != "" {
			obj = " of " + f.Object
		}
		return fmt.Sprintf("Sensitive operation: %s%s by %s in %s (%d)", f.Operation, obj, who(f), vault, f.Count)
	case query.KindRefusedAccess:
		return fmt.Sprintf("Refused access: %d requests of %s from %s refused by %s on %s", f.Count, who(f), f.IP, vault, window)
	case query.KindOldTLS:
		return fmt.Sprintf("Old TLS: %d requests of %s over %s to %s on %s", f.Count, who(f), f.TLSVersion, vault, window)
	case query.KindSlowRequests:
		return fmt.Sprintf("Slow requests: %d %s above the threshold in %s on %s (max %.0f ms)", f.Count, f.Operation, vault, window, f.MaxDurationMs)
	case query.KindAccessAnomaly:
		series, base := "day", 0.0
		if f.Anomaly != nil {
			series, base = f.Anomaly.Series, f.Anomaly.Baseline
		}
		by := "requests to " + vault
		if f.Caller != "" {
			by = "requests of " + who(f) + " to " + vault
		}
		return fmt.Sprintf("Access anomaly: %d %s in the %s %s, baseline %.0f", f.Count, by, series, window, base)
	}
	return fmt.Sprintf("%s: %d in %s on %s", f.Kind, f.Count, vault, window)
}

// link is the web page (pageURL, "" for none) filtered to the finding's
// events: its view lives in the URL's fragment (handler/ui/app.js).
func link(pageURL string, f *query.Finding, vault string) string {
	if pageURL == "" {
		return ""
	}
	v := url.Values{}
	v.Set("vault", vault)
	v.Set("window", "custom")
	from, err1 := time.Parse(time.RFC3339Nano, f.First)
	to, err2 := time.Parse(time.RFC3339Nano, f.Last)
	if err1 == nil && err2 == nil {
		v.Set("from", from.UTC().Truncate(time.Minute).Format(time.RFC3339))
		v.Set("to", to.UTC().Truncate(time.Minute).Add(time.Minute).Format(time.RFC3339))
	}
	if f.Caller != "" && f.Caller != "-" {
		v.Set("caller", f.Caller)
	}
	if f.IP != "" {
		v.Set("ip", f.IP)
	}
	if f.Object != "" {
		v.Set("object", f.Object)
	}
	if f.Operation != "" {
		v.Set("operation", f.Operation)
	}
	// As the page's own detections link (findingState in app.js).
	switch f.Kind {
	case query.KindMassRetrieval:
		v.Set("operation", "SecretGet,KeyGet,VaultGet")
		v.Set("status", "2xx")
	case query.KindSensitiveOperation:
		v.Set("status", "2xx")
	case query.KindRefusedAccess:
		v.Set("status", "401,403")
	}
	return pageURL + "#" + v.Encode()
}

// marshalBounded is the alert's JSON, at most limit bytes: past it the
// finding's lists go (they are what grows).
func marshalBounded(a *Alert, limit int) ([]byte, error) {
	b, err := json.Marshal(a)
	if err != nil || len(b) <= limit {
		return b, err
	}
	c := *a
	f := c.Finding
	f.Vaults, f.Objects, f.IPs, f.ClientInfos, f.Operations, f.Statuses = nil, nil, nil, nil, nil, nil
	c.Finding = f
	b, err = json.Marshal(&c)
	if err == nil && len(b) > limit {
		return nil, fmt.Errorf("alert %s: %d bytes even without its lists", a.ID, len(b))
	}
	return b, err
}
