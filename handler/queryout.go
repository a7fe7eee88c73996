package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"unicode"

	"github.com/kvaudit/kvaudit/internal/parse"
	"github.com/kvaudit/kvaudit/internal/query"
)

var contentTypes = map[string]string{
	"json":   "application/json",
	"ndjson": "application/x-ndjson",
	"csv":    "text/csv; charset=utf-8",
}

// eventWriter writes a page of events as they come, then its end.
type eventWriter interface {
	event(rec *parse.Record) error
	// end closes the page; continuation is "" on the last page.
	end(continuation string) error
}

func newEventWriter(w io.Writer, format string) eventWriter {
	switch format {
	case "ndjson":
		return &ndjsonEvents{w: w}
	case "csv":
		return &csvEvents{w: csv.NewWriter(w), out: w}
	}
	return &jsonEvents{w: w}
}

// jsonEvents writes {"events":[…],"continuation":"…"}.
type jsonEvents struct {
	w   io.Writer
	buf []byte
	n   int
}

func (j *jsonEvents) event(rec *parse.Record) error {
	j.buf = j.buf[:0]
	if j.n == 0 {
		j.buf = append(j.buf, `{"events":[`...)
	} else {
		j.buf = append(j.buf, ',')
	}
	j.n++
	j.buf = parse.AppendJSON(j.buf, rec)
	_, err := j.w.Write(j.buf)
	return err
}

func (j *jsonEvents) end(continuation string) error {
	b := j.buf[:0]
	if j.n == 0 {
		b = append(b, `{"events":[`...)
	}
	b = append(b, ']')
	if continuation != "" {
		b = append(b, `,"continuation":`...)
		b = strconv.AppendQuote(b, continuation) // base64url: no escaping needed
	}
	b = append(b, "}\n"...)
	_, err := j.w.Write(b)
	return err
}

// ndjsonEvents writes one event per line, then, when there is a next page,
// a last line {"continuation":"…"}.
type ndjsonEvents struct {
	w   io.Writer
	buf []byte
}

func (n *ndjsonEvents) event(rec *parse.Record) error {
	n.buf = append(parse.AppendJSON(n.buf[:0], rec), '\n')
	_, err := n.w.Write(n.buf)
	return err
}

func (n *ndjsonEvents) end(continuation string) error {
	if continuation == "" {
		return nil
	}
	_, err := io.WriteString(n.w, `{"continuation":`+strconv.Quote(continuation)+"}\n")
	return err
}

// csvColumns are the CSV columns of an event, the JSON fields flattened.
var csvColumns = []string{
	"time", "vault", "operationName", "status", "httpStatusCode", "resultType", "resultSignature",
	"resultDescription", "durationMs", "callerIpAddress", "objectId", "upn", "appId", "objectName",
	"objectType", "requestUri", "id", "clientInfo", "tlsVersion", "correlationId", "subscriptionId",
	"resourceGroup", "resourceId", "operationVersion", "category", "blob", "offset", "claims",
	"properties", "extra",
}

// csvEvents writes a header and one row per event; when there is a next
// page, a last line "#continuation=<token>" (a comment line to CSV readers
// that take one, such as pandas' comment="#").
type csvEvents struct {
	w       *csv.Writer
	out     io.Writer
	started bool
	row     []string
}

func (c *csvEvents) header() error {
	if c.started {
		return nil
	}
	c.started = true
	return c.w.Write(csvColumns)
}

func (c *csvEvents) event(rec *parse.Record) error {
	if err := c.header(); err != nil {
		return err
	}
	dur := ""
	if rec.HasDuration {
		dur = strconv.FormatFloat(rec.DurationMs, 'f', -1, 64)
	}
	c.row = append(c.row[:0],
		parse.FormatTime(rec.Time), cell(rec.Vault), cell(rec.OperationName), strconv.Itoa(rec.Status),
		strconv.Itoa(rec.HTTPStatusCode), cell(rec.ResultType), cell(rec.ResultSignature), cell(rec.ResultDescription),
		dur, cell(rec.CallerIPAddress), cell(rec.Identity.ObjectID), cell(rec.Identity.UPN), cell(rec.Identity.AppID),
		cell(rec.ObjectName), cell(rec.ObjectType), cell(rec.RequestURI), cell(rec.ID), cell(rec.ClientInfo),
		cell(rec.TLSVersion), cell(rec.CorrelationID), cell(rec.SubscriptionID), cell(rec.ResourceGroup),
		cell(rec.ResourceID), cell(rec.OperationVersion), cell(rec.Category), cell(rec.Blob),
		strconv.FormatInt(rec.Offset, 10), rawCell(rec.Identity.Claims), rawCell(rec.Properties), rawCell(rec.Extra))
	return c.w.Write(c.row)
}

func (c *csvEvents) end(continuation string) error {
	if err := c.header(); err != nil {
		return err
	}
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return err
	}
	if continuation != "" {
		_, err := io.WriteString(c.out, "#continuation="+continuation+"\n")
		return err
	}
	return nil
}

// cell defuses a value from the logs for spreadsheets: a cell starting with
// = + - @ or a tab or carriage return is a formula to Excel and its kin
// (CSV injection), so it is prefixed with a quote, as OWASP advises.
// Log fields such as clientInfo are chosen by whoever called the vault.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// rawCell is a raw JSON value on one line, or "" when it is not valid JSON.
func rawCell(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return ""
	}
	return b.String()
}

// writeStats writes st: json is the envelope, ndjson one group per line,
// csv key,count rows.
func writeStats(w io.Writer, format string, st *query.Stats) error {
	switch format {
	case "ndjson":
		enc := json.NewEncoder(w)
		for _, g := range st.Groups {
			if err := enc.Encode(g); err != nil {
				return err
			}
		}
		return nil
	case "csv":
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"key", "count"})
		for _, g := range st.Groups {
			_ = cw.Write([]string{cell(g.Key), strconv.FormatInt(g.Count, 10)})
		}
		cw.Flush()
		return cw.Error()
	}
	return json.NewEncoder(w).Encode(st)
}

// findingColumns are the CSV columns of a finding; lists are key=count
// pairs separated by spaces.
var findingColumns = []string{"kind", "count", "first", "last", "caller", "ip", "vault", "operation", "object",
	"day", "tlsVersion", "maxDurationMs", "avgDurationMs", "vaults", "objects", "ips", "clientInfos", "operations", "statuses"}

// writeDetections writes d: json is the envelope, ndjson one finding per
// line, csv one row per finding.
func writeDetections(w io.Writer, format string, d *query.Detections) error {
	switch format {
	case "ndjson":
		enc := json.NewEncoder(w)
		for _, f := range d.Findings {
			if err := enc.Encode(f); err != nil {
				return err
			}
		}
		return nil
	case "csv":
		cw := csv.NewWriter(w)
		_ = cw.Write(findingColumns)
		num := func(f float64) string {
			if f == 0 {
				return ""
			}
			return strconv.FormatFloat(f, 'f', -1, 64)
		}
		for _, f := range d.Findings {
			_ = cw.Write([]string{f.Kind, strconv.FormatInt(f.Count, 10), f.First, f.Last, cell(f.Caller), cell(f.IP),
				cell(f.Vault), cell(f.Operation), cell(f.Object), f.Day, cell(f.TLSVersion), num(f.MaxDurationMs),
				num(f.AvgDurationMs), groupsCell(f.Vaults), groupsCell(f.Objects), groupsCell(f.IPs),
				groupsCell(f.ClientInfos), groupsCell(f.Operations), groupsCell(f.Statuses)})
		}
		cw.Flush()
		return cw.Error()
	}
	return json.NewEncoder(w).Encode(d)
}

func groupsCell(gs []query.Group) string {
	parts := make([]string, len(gs))
	for i, g := range gs {
		parts[i] = g.Key + "=" + strconv.FormatInt(g.Count, 10)
	}
	return cell(strings.Join(parts, " "))
}

// terminalSafe replaces control characters (escape sequences included) in
// text from the logs before it reaches an operator's terminal.
func terminalSafe(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}
