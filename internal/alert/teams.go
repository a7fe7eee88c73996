package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kvaudit/kvaudit/internal/query"
)

// Teams posts each alert to a Microsoft Teams channel or chat through a
// Workflows webhook ("When a Teams webhook request is received"), which
// takes a message with an Adaptive Card attachment. The card declares
// schema version 1.4 (Teams renders 1.5 on some clients only); a test
// validates it against that version's published JSON schema.
//
// Everything from the logs goes into TextRun elements of RichTextBlocks:
// Adaptive Cards parse markdown in TextBlock and FactSet text but not in
// a TextRun, so an object named "[click](https://…)" shows as those
// characters, not as a link.
type Teams struct {
	url    string
	client *http.Client
}

// CardVersion is the Adaptive Card schema version the card declares.
const CardVersion = "1.4"

// NewTeams is the Teams sink posting to a Workflows webhook URL (a
// secret: its signature is in the query).
func NewTeams(url string) *Teams { return &Teams{url: url, client: httpClient()} }

// Name implements Sink.
func (t *Teams) Name() string { return "teams" }

// Target implements Sink.
func (t *Teams) Target() string { return hostOf(t.url) }

// Send implements Sink.
func (t *Teams) Send(ctx context.Context, a *Alert, _ time.Time) error {
	body, err := json.Marshal(TeamsMessage(a))
	if err != nil {
		return &SendError{Permanent: true, Reason: "cannot encode the card: " + err.Error()}
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("User-Agent", "kvaudit")
	return post(ctx, t.client, t.url, h, body)
}

type obj = map[string]any

// kindTitle is a kind as people read it.
var kindTitle = map[string]string{
	query.KindMassRetrieval:      "Mass secret retrieval",
	query.KindSensitiveOperation: "Sensitive operation",
	query.KindRefusedAccess:      "Refused access",
	query.KindOldTLS:             "Old TLS",
	query.KindSlowRequests:       "Slow requests",
	query.KindAccessAnomaly:      "Access anomaly",
}

// TeamsMessage is the Workflows webhook message carrying a's card.
func TeamsMessage(a *Alert) obj {
	return obj{
		"type": "message",
		"attachments": []obj{{
			"contentType": "application/vnd.microsoft.card.adaptive",
			"contentUrl":  nil,
			"content":     Card(a),
		}},
	}
}

// Card is a's Adaptive Card: what happened, who, from where, which vault,
// when, and a link to the web page filtered to the events.
func Card(a *Alert) obj {
	f := &a.Finding
	color := map[string]string{SeverityHigh: "Attention", SeverityMedium: "Warning"}[a.Severity]
	if color == "" {
		color = "Default"
	}
	kind := kindTitle[a.Kind]
	if kind == "" {
		kind = a.Kind
	}
	head := obj{"type": "TextBlock", "text": fmt.Sprintf("kvaudit · %s · %s", kind, a.Severity), "weight": "Bolder", "size": "Medium", "color": color, "wrap": true}
	body := []any{head, obj{"type": "RichTextBlock", "inlines": []obj{textRun(a.Title, false)}}}
	line := func(label, value string) {
		if value == "" {
			return
		}
		body = append(body, obj{"type": "RichTextBlock", "spacing": "Small", "inlines": []obj{textRun(label+": ", true), textRun(value, false)}})
	}
	line("Vault", a.Vault)
	line("Who", callerText(f))
	line("From", firstOf(f.IP, f.IPs))
	what := strings.TrimSpace(strings.Join(nonEmpty(f.Operation, f.Object, f.TLSVersion), " "))
	if what == "" {
		what = firstOf("", f.Operations)
	}
	line("What", what)
	if f.Object == "" {
		line("Objects", firstOf("", f.Objects))
	}
	line("Client", firstOf("", f.ClientInfos))
	line("When", when(f))
	line("Count", fmt.Sprint(f.Count))
	line("Alert id", a.ID)
	card := obj{
		"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
		"type":    "AdaptiveCard",
		"version": CardVersion,
		"body":    body,
	}
	if a.Link != "" {
		card["actions"] = []obj{{"type": "Action.OpenUrl", "title": "Open the events in kvaudit", "url": a.Link}}
	}
	return card
}

func textRun(s string, bold bool) obj {
	r := obj{"type": "TextRun", "text": s}
	if bold {
		r["weight"] = "Bolder"
	}
	return r
}

func callerText(f *query.Finding) string {
	if f.Caller == "" {
		return ""
	}
	if f.Caller == "-" {
		return "unidentified (no identity in the log)"
	}
	return f.Caller
}

// firstOf is one, or the first three of gs with their counts.
func firstOf(one string, gs []query.Group) string {
	if one != "" {
		return one
	}
	var parts []string
	for i, g := range gs {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(gs)-3))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%d)", g.Key, g.Count))
	}
	return strings.Join(parts, ", ")
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func when(f *query.Finding) string {
	first, err1 := time.Parse(time.RFC3339Nano, f.First)
	last, err2 := time.Parse(time.RFC3339Nano, f.Last)
	if err1 != nil || err2 != nil {
		return ""
	}
	return first.UTC().Format("2006-01-02 15:04:05") + " to " + last.UTC().Format("2006-01-02 15:04:05") + " UTC"
}
