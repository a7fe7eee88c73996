package parse

import (
	"bytes"
	"encoding/json"
	"math"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// refNormalize is a reference for the hand-written scanner, written plainly
// with encoding/json, strings and net/url. It returns the Record of one
// JSON Lines record, or the reason it is bad: "invalid" for anything that
// is not JSON, else the Reader's reason.
func refNormalize(line []byte, opt Options, off int64) (Record, string) {
	if !json.Valid(line) {
		return Record{}, "invalid"
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil || m == nil { // "null" decodes to a nil map
		return Record{}, "not a JSON object"
	}
	str := func(raw json.RawMessage) string {
		var s string
		if len(raw) > 0 && raw[0] == '"' {
			_ = json.Unmarshal(raw, &s)
		}
		return s
	}
	object := func(raw json.RawMessage) map[string]json.RawMessage {
		var o map[string]json.RawMessage
		if len(raw) > 0 && raw[0] == '{' {
			_ = json.Unmarshal(raw, &o)
		}
		return o
	}
	present := func(raw json.RawMessage) bool { return raw != nil && string(raw) != "null" }

	var rec Record
	switch raw, ok := m["time"]; {
	case !ok:
		return Record{}, "time: missing"
	case string(raw) == "null":
		return Record{}, "time: null"
	case raw[0] != '"':
		return Record{}, "time: not a string"
	default:
		t, err := time.Parse(time.RFC3339Nano, str(raw))
		if err != nil {
			return Record{}, "time: cannot parse"
		}
		rec.Time = t.UTC()
	}

	rec.ResourceID = str(m["resourceId"])
	rec.OperationName = str(m["operationName"])
	rec.OperationVersion = str(m["operationVersion"])
	rec.Category = str(m["category"])
	rec.ResultType = str(m["resultType"])
	rec.ResultSignature = str(m["resultSignature"])
	rec.ResultDescription = str(m["resultDescription"])
	rec.CallerIPAddress = str(m["callerIpAddress"])
	rec.CorrelationID = str(m["correlationId"])
	rec.DurationMs, rec.HasDuration = refNumber(m["durationMs"])

	if rec.ResourceID != "" {
		segs := strings.FieldsFunc(rec.ResourceID, func(r rune) bool { return r == '/' })
		for i := 1; i < len(segs); i++ {
			switch strings.ToLower(segs[i-1]) {
			case "subscriptions":
				if rec.SubscriptionID == "" {
					rec.SubscriptionID = segs[i]
				}
			case "resourcegroups":
				if rec.ResourceGroup == "" {
					rec.ResourceGroup = segs[i]
				}
			case "vaults":
				if rec.Vault == "" {
					rec.Vault = strings.ToLower(segs[i])
				}
			}
		}
		if rec.Vault == "" && len(segs) > 0 {
			rec.Vault = strings.ToLower(segs[len(segs)-1])
		}
	} else if bp, ok := ParseBlobPath(opt.Blob); ok {
		rec.SubscriptionID, rec.ResourceGroup, rec.Vault = bp.SubscriptionID, bp.ResourceGroup, bp.Vault
	}

	if raw := m["properties"]; present(raw) {
		rec.Properties = raw
		p := object(raw)
		rec.RequestURI = str(p["requestUri"])
		rec.ID = str(p["id"])
		rec.ClientInfo = str(p["clientInfo"])
		rec.TLSVersion = str(p["tlsVersion"])
		if code := p["httpStatusCode"]; len(code) > 0 {
			s := string(code)
			if code[0] == '"' {
				s = str(code)
			}
			if len(s) <= 9 && strings.Trim(s, "0123456789") == "" {
				rec.HTTPStatusCode, _ = strconv.Atoi(s)
			}
		}
	}
	rec.Status = rec.HTTPStatusCode
	if rec.Status <= 0 {
		rec.Status = statusFromSignature(rec.ResultSignature)
	}
	for _, u := range []string{rec.ID, rec.RequestURI} {
		if typ, name := refObject(u); typ != "" {
			rec.ObjectType, rec.ObjectName = typ, name
			break
		}
	}

	if raw := m["identity"]; present(raw) {
		rec.Identity.Claims = raw
		if claim := object(raw)["claim"]; present(claim) {
			rec.Identity.Claims = claim
			c := object(claim)
			first := func(keys ...string) string {
				for _, k := range keys {
					if s := str(c[k]); s != "" {
						return s
					}
				}
				return ""
			}
			rec.Identity.ObjectID = first("oid", claimObjectID)
			rec.Identity.UPN = first("upn", claimUPN, "unique_name")
			rec.Identity.AppID = str(c["appid"])
		}
	}

	known := map[string]bool{"time": true, "resourceId": true, "operationName": true, "operationVersion": true,
		"category": true, "resultType": true, "resultSignature": true, "resultDescription": true, "durationMs": true,
		"callerIpAddress": true, "correlationId": true, "identity": true, "properties": true}
	extra := map[string]json.RawMessage{}
	for k, v := range m {
		if !known[k] {
			extra[k] = v
		}
	}
	if len(extra) > 0 {
		rec.Extra, _ = json.Marshal(extra)
	}
	rec.Blob, rec.Offset = opt.Blob, off
	return rec, ""
}

// refNumber reads a number logged as a JSON number or a string holding one.
func refNumber(raw json.RawMessage) (float64, bool) {
	s := string(raw)
	if len(raw) > 0 && raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, false
		}
		if s == "" || s != strings.TrimSpace(s) || !json.Valid([]byte(s)) || !strings.ContainsAny(s[:1], "-0123456789") {
			return 0, false
		}
	} else if len(raw) == 0 || !strings.ContainsAny(s[:1], "-0123456789") {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// refObject derives the object type and name from a Key Vault URL.
func refObject(u string) (typ, name string) {
	path := u
	if i := strings.Index(u, "://"); i >= 0 && !strings.ContainsAny(u[:i], "/?#") {
		path = ""
		if j := strings.IndexAny(u[i+3:], "/?#"); j >= 0 && u[i+3+j] == '/' {
			path = u[i+3+j:]
		}
	}
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	segs := strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
	if len(segs) > 0 && strings.EqualFold(segs[0], "subscriptions") {
		// ARM: the collection follows vaults/<vault>, within 16 segments.
		found := false
		for i := 1; i < len(segs) && i <= 16; i++ {
			if strings.EqualFold(segs[i], "vaults") {
				segs, found = segs[min(i+2, len(segs)):], true
				break
			}
		}
		if !found {
			return "", ""
		}
	}
	if len(segs) < 2 {
		return "", ""
	}
	coll, name := strings.ToLower(segs[0]), segs[1]
	types := map[string]string{"secrets": "secret", "keys": "key", "certificates": "certificate",
		"deletedsecrets": "secret", "deletedkeys": "key", "deletedcertificates": "certificate"}
	typ = types[coll]
	switch {
	case typ == "":
		return "", ""
	case coll == "certificates" && (strings.EqualFold(name, "issuers") || strings.EqualFold(name, "contacts")):
		return "", ""
	case !strings.HasPrefix(coll, "deleted") && len(segs) == 2 && strings.EqualFold(name, "restore"):
		return "", ""
	}
	if un, err := url.PathUnescape(name); err == nil {
		name = un
	}
	return typ, name
}

// agree reads line (no newline in it) with a Reader and with refNormalize
// and reports any difference.
func agree(t *testing.T, line []byte, blob string) {
	t.Helper()
	// A leading blank line keeps a byte order mark from being skipped.
	in := append([]byte("\n"), line...)
	in = append(in, '\n')
	res := readAll(t, bytes.NewReader(in), Options{Blob: blob, Format: FormatJSONLines})
	// Offset is that of the object's '{'.
	off := int64(1 + len(line) - len(bytes.TrimLeft(line, " \t\r")))
	want, reason := refNormalize(line, Options{Blob: blob}, off)
	if reason != "" {
		if len(res.recs) != 0 || len(res.errs) != 1 {
			t.Fatalf("reference: %s; Reader: %d records, errors %v\nline %q", reason, len(res.recs), res.errs, line)
		}
		got := res.errs[0].Reason
		if reason == "invalid" && !strings.HasPrefix(got, "invalid JSON") || reason != "invalid" && !strings.HasPrefix(got, reason) {
			t.Fatalf("reference: %s; Reader: %s\nline %q", reason, got, line)
		}
		return
	}
	if len(res.recs) != 1 {
		t.Fatalf("reference: a record; Reader: errors %v\nline %q", res.errs, line)
	}
	compareRecords(t, res.recs[0], want, line)
}

// compareRecords fails t unless got and want are the same record.
func compareRecords(t *testing.T, got, want Record, line []byte) {
	t.Helper()
	// Raw fields: equal as JSON values (the reference re-encodes Extra, sorting keys).
	for _, pair := range [][2]*[]byte{
		{(*[]byte)(&got.Properties), (*[]byte)(&want.Properties)},
		{(*[]byte)(&got.Identity.Claims), (*[]byte)(&want.Identity.Claims)},
		{(*[]byte)(&got.Extra), (*[]byte)(&want.Extra)},
	} {
		if !sameJSON(*pair[0], *pair[1]) {
			t.Fatalf("raw field: got %s, want %s\nline %q", *pair[0], *pair[1], line)
		}
		*pair[0], *pair[1] = nil, nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("records differ:\n got %+v\nwant %+v\nline %q", got, want, line)
	}
}

func sameJSON(a, b []byte) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func TestAgreementSamples(t *testing.T) {
	for _, line := range sampleLines(t) {
		agree(t, bytes.TrimSuffix(line, []byte("\n")), "")
	}
}

// TestAgreementStream reads many records with one Reader, whose caches of
// recent values then come into play, in varying order.
func TestAgreementStream(t *testing.T) {
	lines := sampleLines(t)
	var data []byte
	var order []int
	for round := 0; round < 6; round++ {
		for i := range lines {
			k := i
			if round%2 == 1 {
				k = len(lines) - 1 - i
			}
			if round >= 4 {
				k = (i * 7) % len(lines)
			}
			order = append(order, k)
			data = append(data, bytes.TrimSuffix(lines[k], []byte("\n"))...)
			data = append(data, '\n')
		}
	}
	res := readAll(t, bytes.NewReader(data), Options{})
	if len(res.recs) != len(order) {
		t.Fatalf("%d records, want %d", len(res.recs), len(order))
	}
	for i, rec := range res.recs {
		line := bytes.TrimSuffix(lines[order[i]], []byte("\n"))
		want, reason := refNormalize(line, Options{}, rec.Offset)
		if reason != "" {
			t.Fatal(reason)
		}
		compareRecords(t, rec, want, line)
	}
}

func TestAgreementCases(t *testing.T) {
	const blob = "resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/R/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/BLOBVAULT/y=2024/m=01/d=01/h=00/m=00/PT1H.json"
	for _, line := range agreementSeeds {
		agree(t, []byte(line), blob)
	}
}

// agreementSeeds are lines that probe the scanner; they seed FuzzAgreement too.
var agreementSeeds = []string{
	`{"time":"2024-04-03T14:03:10.7886260Z"}`,
	`{"time":"2024-04-03T14:03:10.7886260Z","time":null}`,
	`{"time":null,"time":"2024-04-03T14:03:10Z"}`,
	`{"ti\u006de":"2024-04-03T14:03:10Z","resourceId":"/a/VAULTS/V\u00c9"}`,
	`{"time":"2024-04-03T14:03:10+01:00","durationMs":"1e2"}`,
	`{"time":"2024\u002d04-03T14:03:10Z","properties":{"httpStatusCode":"0403","requestUri":"https://v/keys/a%2Fb"}}`,
	`{"time":"2024-04-03T14:03:10Z","properties":[1,{"id":"x"}],"identity":[{"claim":{}}]}`,
	`{"time":"2024-04-03T14:03:10Z","properties":{"id":"https://v/secrets/s","properties":{"id":"https://v/keys/k"}}}`,
	`{"time":"2024-04-03T14:03:10Z","identity":{"claim":{"oid":"a"},"claim":"b"}}`,
	`{"time":"2024-04-03T14:03:10Z","x":1,"x":2,"y":{"z":[true,false,null,-0.5e-3]}}`,
	`{"time":"2024-04-03T14:03:10Z","\ud83d\ude00":"\ud83d","\ud800\ud800":"\udc00x"}`,
	"{\"time\":\"2024-04-03T14:03:10Z\",\"k\xff\":\"v\xfe\xed\xa0\x80\"}",
	` { "time" : "2024-04-03T14:03:10Z" , "category" : "AuditEvent" } `,
	`{"time":"2024-04-03T14:03:10Z","resourceId":""}`,
	`{"time":"2024-04-03T14:03:10Z","resourceId":"VAULTS"}`,
	`{"time":"2024-04-03T14:03:10Z","resourceId":"//SUBSCRIPTIONS//x//VAULTS"}`,
	`{"time":"0000-01-01T00:00:00Z"}`,
	`{"time":"2024-04-03T14:03:10.1234567890123Z"}`,
	`{"time":"2024-04-03t14:03:10z"}`,
	`{"time":"2024-04-03T14:03:10,5Z"}`,
	`{"time":""}`,
	`{"time":5}`,
	`{}`,
	`[]`,
	`"x"`,
	`{"time":"2024-04-03T14:03:10Z",}`,
	`{"time":"2024-04-03T14:03:10Z"`,
	`{"time":"2024-04-03T14:03:10Z","a":"\u00"}`,
	`{"time":"2024-04-03T14:03:10Z","a":1e}`,
	`{"time":"2024-04-03T14:03:10Z","durationMs":-0}`,
	`{"time":"2024-04-03T14:03:10Z","durationMs":"-0.0"}`,
	`{"time":"2024-04-03T14:03:10Z","durationMs":123456789012345678901234567890}`,
	`{"time":"2024-04-03T14:03:10Z","durationMs":0.000000000000000000000000001}`,
	`{"time":"2024-04-03T14:03:10Z","properties":{"requestUri":"https://v/secrets/restore/x"}}`,
	`{"time":"2024-04-03T14:03:10Z","properties":{"requestUri":"a://b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/vaults/v/secrets/s"}}`,
	`{"time":"2024-04-03T14:03:10Z","properties":{"requestUri":"/x?y://z/secrets/s"}}`,
}
