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
		return &csvEvents{w: newSheetCSV(w), out: w}
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
	w       *sheetCSV
	out     io.Writer
	started bool
	row     []string
}

func (c *csvEvents) header() error {
	if c.started {
		return nil
	}
	c.started = true
	return c.w.write(csvColumns)
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
		parse.FormatTime(rec.Time), rec.Vault, rec.OperationName, strconv.Itoa(rec.Status),
		strconv.Itoa(rec.HTTPStatusCode), rec.ResultType, rec.ResultSignature, rec.ResultDescription,
		dur, rec.CallerIPAddress, rec.Identity.ObjectID, rec.Identity.UPN, rec.Identity.AppID,
		rec.ObjectName, rec.ObjectType, rec.RequestURI, rec.ID, rec.ClientInfo,
		rec.TLSVersion, rec.CorrelationID, rec.SubscriptionID, rec.ResourceGroup,
		rec.ResourceID, rec.OperationVersion, rec.Category, rec.Blob,
		strconv.FormatInt(rec.Offset, 10), rawCell(rec.Identity.Claims), rawCell(rec.Properties), rawCell(rec.Extra))
	return c.w.write(c.row)
}

func (c *csvEvents) end(continuation string) error {
	if err := c.header(); err != nil {
		return err
	}
	if err := c.w.flush(); err != nil {
		return err
	}
	if continuation != "" {
		_, err := io.WriteString(c.out, "#continuation="+continuation+"\n")
		return err
	}
	return nil
}

// sheetCSV writes CSV (RFC 4180, as encoding/csv does) for spreadsheets:
// every cell of every row goes through [cell] first, header and numbers
// included, so that no CSV kvaudit writes depends on a caller
// remembering to defuse a column.
type sheetCSV struct {
	w   *csv.Writer
	row []string
}

func newSheetCSV(w io.Writer) *sheetCSV { return &sheetCSV{w: csv.NewWriter(w)} }

// write writes one row; like csv.Writer.Write, an error may also show
// only at flush.
func (s *sheetCSV) write(fields []string) error {
	s.row = s.row[:0]
	for _, f := range fields {
		s.row = append(s.row, cell(f))
	}
	return s.w.Write(s.row)
}

// flush writes what is buffered and returns the first error of any write.
func (s *sheetCSV) flush() error {
	s.w.Flush()
	return s.w.Error()
}

// cell defuses a value for spreadsheets (CSV injection, OWASP). A
// spreadsheet reads a cell that starts with = + - @, a tab or a carriage
// return as a formula. And it may cut our cell into several: Excel splits
// a .csv on the system's list separator, ";" in much of Europe, not on
// ",", and a splitter may honour quotes or not, and may take a tab or a
// line break inside a quoted cell as a break. So the rule is applied to
// every part of the cell, not only to its start:
//
//	wherever a part begins — at the start of the cell, or after a ",",
//	";", tab, carriage return or line feed in it — and, after any spaces
//	and double quotes, the next character is = + - @, a tab or a carriage
//	return, a ' is put before that character.
//
// Whichever way the row is split, no part then starts a formula: a
// splitter starts a part only after one of those characters, and an
// opening quote or leading spaces do not hide the character after them.
// Nothing else changes, so a JSON column stays JSON unless it holds a
// negative number after a comma ([1,'-2]). Log fields such as clientInfo
// and object names are chosen by whoever called the vault.
func cell(s string) string {
	if !strings.ContainsAny(s, formulaStarts) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 4)
	partStart := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		// UTF-8 keeps these ASCII bytes out of multi-byte characters, so
		// a byte loop sees every one and breaks no character.
		switch {
		case partStart && (c == ' ' || c == '"'):
		case partStart && strings.IndexByte(formulaStarts, c) >= 0:
			b.WriteByte('\'')
			partStart = c == '\t' || c == '\r' // they also begin a new part
		default:
			partStart = strings.IndexByte(partBreaks, c) >= 0
		}
		b.WriteByte(c)
	}
	return b.String()
}

const (
	// formulaStarts make a spreadsheet read a cell as a formula (OWASP's
	// list: https://owasp.org/www-community/attacks/CSV_Injection).
	formulaStarts = "=+-@\t\r"
	// partBreaks are where a spreadsheet may begin a new cell inside one
	// of ours: the list separators Excel and LibreOffice use (",", ";",
	// tab) and line breaks.
	partBreaks = ",;\t\r\n"
)

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
		cw := newSheetCSV(w)
		_ = cw.write([]string{"key", "count"})
		for _, g := range st.Groups {
			_ = cw.write([]string{g.Key, strconv.FormatInt(g.Count, 10)})
		}
		return cw.flush()
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
		cw := newSheetCSV(w)
		_ = cw.write(findingColumns)
		num := func(f float64) string {
			if f == 0 {
				return ""
			}
			return strconv.FormatFloat(f, 'f', -1, 64)
		}
		for _, f := range d.Findings {
			_ = cw.write([]string{f.Kind, strconv.FormatInt(f.Count, 10), f.First, f.Last, f.Caller, f.IP,
				f.Vault, f.Operation, f.Object, f.Day, f.TLSVersion, num(f.MaxDurationMs),
				num(f.AvgDurationMs), groupsCell(f.Vaults), groupsCell(f.Objects), groupsCell(f.IPs),
				groupsCell(f.ClientInfos), groupsCell(f.Operations), groupsCell(f.Statuses)})
		}
		return cw.flush()
	}
	return json.NewEncoder(w).Encode(d)
}

func groupsCell(gs []query.Group) string {
	parts := make([]string, len(gs))
	for i, g := range gs {
		parts[i] = g.Key + "=" + strconv.FormatInt(g.Count, 10)
	}
	return strings.Join(parts, " ")
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
