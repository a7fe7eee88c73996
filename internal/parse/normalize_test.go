package parse

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// one parses a single JSON Lines record.
func one(t *testing.T, line string, opt Options) Record {
	t.Helper()
	opt.Complete = true
	res := readAll(t, strings.NewReader(line), opt)
	if len(res.recs) != 1 || len(res.errs) != 0 {
		t.Fatalf("%s: %d records, errors %v", line, len(res.recs), res.errs)
	}
	return res.recs[0]
}

const tm = `"time":"2024-04-03T14:03:10.7886260Z"`

func TestDuration(t *testing.T) {
	tests := []struct {
		v    string
		want float64
		ok   bool
	}{
		{`"575"`, 575, true},
		{`575`, 575, true},
		{`"14.2187"`, 14.2187, true},
		{`14.2187`, 14.2187, true},
		{`0`, 0, true},
		{`-3`, -3, true},
		{`1e3`, 1000, true},
		{`"1E-2"`, 0.01, true},
		{`123456789012345678`, 123456789012345678, true},
		{`0.1234567890123456789`, 0.1234567890123456789, true},
		{`"1e400"`, 0, false},
		{`1e400`, 0, false},
		{`null`, 0, false},
		{`""`, 0, false},
		{`" 5"`, 0, false},
		{`"05"`, 0, false},
		{`"NaN"`, 0, false},
		{`"Infinity"`, 0, false},
		{`"0x10"`, 0, false},
		{`"\u0035"`, 5, true},
		{`true`, 0, false},
		{`[5]`, 0, false},
		{`{"ms":5}`, 0, false},
	}
	for _, tc := range tests {
		rec := one(t, `{`+tm+`,"durationMs":`+tc.v+`}`, Options{})
		if rec.DurationMs != tc.want || rec.HasDuration != tc.ok {
			t.Errorf("durationMs %s: %v %v, want %v %v", tc.v, rec.DurationMs, rec.HasDuration, tc.want, tc.ok)
		}
	}
	rec := one(t, `{`+tm+`}`, Options{})
	if rec.HasDuration {
		t.Error("absent durationMs: HasDuration")
	}
}

func TestIdentity(t *testing.T) {
	tests := []struct {
		name string
		v    string // identity value; "" = absent
		want Identity
	}{
		{"absent", "", Identity{}},
		{"null", `null`, Identity{}},
		{"short claims", `{"claim":{"oid":"o","upn":"u@x","appid":"a","unique_name":"n@x","xms_az_nwperimid":[]}}`,
			Identity{ObjectID: "o", UPN: "u@x", AppID: "a", Claims: json.RawMessage(`{"oid":"o","upn":"u@x","appid":"a","unique_name":"n@x","xms_az_nwperimid":[]}`)}},
		{"unique_name when no upn", `{"claim":{"unique_name":"n@x"}}`, Identity{UPN: "n@x", Claims: json.RawMessage(`{"unique_name":"n@x"}`)}},
		{"upn wins over unique_name in any order", `{"claim":{"unique_name":"n@x","upn":"u@x"}}`, Identity{UPN: "u@x", Claims: json.RawMessage(`{"unique_name":"n@x","upn":"u@x"}`)}},
		{"long URIs", `{"claim":{"` + claimObjectID + `":"o","` + claimUPN + `":"u@x","appid":"a"}}`,
			Identity{ObjectID: "o", UPN: "u@x", AppID: "a", Claims: json.RawMessage(`{"` + claimObjectID + `":"o","` + claimUPN + `":"u@x","appid":"a"}`)}},
		{"short wins over long", `{"claim":{"oid":"short","` + claimObjectID + `":"long"}}`, Identity{ObjectID: "short", Claims: json.RawMessage(`{"oid":"short","` + claimObjectID + `":"long"}`)}},
		{"array claim kept raw", `{"claim":{"oid":["a","b"]}}`, Identity{Claims: json.RawMessage(`{"oid":["a","b"]}`)}},
		{"plain string", `"user@contoso.com"`, Identity{Claims: json.RawMessage(`"user@contoso.com"`)}},
		{"object without claim", `{"name":"x"}`, Identity{Claims: json.RawMessage(`{"name":"x"}`)}},
		{"claim null", `{"claim":null}`, Identity{Claims: json.RawMessage(`{"claim":null}`)}},
		{"escaped claim name", `{"claim":{"o\u0069d":"o"}}`, Identity{ObjectID: "o", Claims: json.RawMessage(`{"o\u0069d":"o"}`)}},
		{"duplicate claim: last wins", `{"claim":{"oid":"a"},"claim":{"upn":"u"}}`, Identity{UPN: "u", Claims: json.RawMessage(`{"upn":"u"}`)}},
	}
	for _, tc := range tests {
		line := `{` + tm
		if tc.v != "" {
			line += `,"identity":` + tc.v
		}
		rec := one(t, line+`}`, Options{})
		if !reflect.DeepEqual(rec.Identity, tc.want) {
			t.Errorf("%s: %+v (claims %s), want %+v", tc.name, rec.Identity, rec.Identity.Claims, tc.want)
		}
	}
}

func TestObjectRef(t *testing.T) {
	tests := []struct {
		url        string
		typ, name  string
		fromURIToo bool // also derived when given as requestUri
	}{
		{"https://v.vault.azure.net/secrets/db-password", "secret", "db-password", true},
		{"https://v.vault.azure.net/secrets/db-password/0123abcd?api-version=7.4", "secret", "db-password", true},
		{"https://v.vault.azure.net/keys/k1/backup?api-version=7.3", "key", "k1", true},
		{"https://v.vault.azure.net/certificates/c1/pending", "certificate", "c1", true},
		{"https://v.vault.azure.net/deletedsecrets/s1", "secret", "s1", true},
		{"https://v.vault.azure.net/deletedkeys/k1/recover", "key", "k1", true},
		{"https://v.vault.azure.net/deletedcertificates/c1", "certificate", "c1", true},
		{"https://v.vault.azure.net/SECRETS/Mixed", "secret", "Mixed", true},
		{"https://v.vault.azure.net/secrets/a%20b", "secret", "a b", true},
		{"https://v.vault.azure.net/secrets/a%zzb", "secret", "a%zzb", true},
		{"https://v.vault.azure.net/secrets?api-version=7.0", "", "", false},
		{"https://v.vault.azure.net/secrets/", "", "", false},
		{"https://v.vault.azure.net/deletedsecrets?api-version=7.0", "", "", false},
		{"https://v.vault.azure.net/certificates/issuers/digicert", "", "", false},
		{"https://v.vault.azure.net/certificates/contacts", "", "", false},
		{"https://v.vault.azure.net/secrets/restore?api-version=7.0", "", "", false},
		{"https://v.vault.azure.net/deletedsecrets/restore", "secret", "restore", true},
		{"https://v.vault.azure.net/", "", "", false},
		{"https://v.vault.azure.net", "", "", false},
		{"https://management.azure.com/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v?api-version=2023-08-01", "", "", false},
		{"https://management.azure.com/subscriptions/s/resourceGroups/keys/providers/Microsoft.KeyVault/vaults/v", "", "", false},
		{"https://management.azure.com/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v/secrets/s1?api-version=2023-08-01", "secret", "s1", true},
		{"/secrets/s1", "secret", "s1", true},
		{"https://v.vault.azure.net/storage/acct", "", "", false},
		{"https://v.vault.azure.net/secrets/s1#frag", "secret", "s1", true},
	}
	for _, tc := range tests {
		rec := one(t, `{`+tm+`,"properties":{"id":"`+tc.url+`"}}`, Options{})
		if rec.ObjectType != tc.typ || rec.ObjectName != tc.name {
			t.Errorf("id %s: %q %q, want %q %q", tc.url, rec.ObjectType, rec.ObjectName, tc.typ, tc.name)
		}
		rec = one(t, `{`+tm+`,"properties":{"id":"https://v.vault.azure.net/","requestUri":"`+tc.url+`"}}`, Options{})
		if rec.ObjectType != tc.typ || rec.ObjectName != tc.name {
			t.Errorf("requestUri %s: %q %q, want %q %q", tc.url, rec.ObjectType, rec.ObjectName, tc.typ, tc.name)
		}
	}
	// id wins over requestUri.
	rec := one(t, `{`+tm+`,"properties":{"requestUri":"https://v/secrets/restore/x","id":"https://v/secrets/real"}}`, Options{})
	if rec.ObjectName != "real" {
		t.Errorf("id should win: %q", rec.ObjectName)
	}
}

func TestStatus(t *testing.T) {
	tests := []struct {
		props, sig string
		http, want int
	}{
		{`{"httpStatusCode":403}`, "Success", 403, 403},
		{`{"httpStatusCode":"404"}`, "OK", 404, 404},
		{`{"httpStatusCode":200}`, "Forbidden", 200, 200},
		{`{}`, "Forbidden", 0, 403},
		{`{}`, "Not Found", 0, 404},
		{`{}`, "not found", 0, 404},
		{`{}`, "NotFound", 0, 404},
		{`{}`, "Bad Request", 0, 400},
		{`{}`, "Too Many Requests", 0, 429},
		{`{}`, "Service Unavailable", 0, 503},
		{`{}`, "Internal Server Error", 0, 500},
		{`{}`, "Accepted", 0, 202},
		{`{}`, "No Content", 0, 204},
		{`{}`, "Unauthorized", 0, 401},
		{`{}`, "Conflict", 0, 409},
		{`{}`, "OK", 0, 200},
		{`{}`, "Success", 0, 200},
		{`{}`, "429", 0, 429},
		{`{}`, "Whatever", 0, 0},
		{`{}`, "", 0, 0},
		{`{"httpStatusCode":0}`, "Forbidden", 0, 403},
		{`{"httpStatusCode":-1}`, "", 0, 0},
		{`{"httpStatusCode":200.5}`, "", 0, 0},
		{`{"httpStatusCode":"2e2"}`, "", 0, 0},
		{`{"httpStatusCode":null}`, "OK", 0, 200},
		{`"not an object"`, "OK", 0, 200},
	}
	for _, tc := range tests {
		rec := one(t, `{`+tm+`,"resultSignature":"`+tc.sig+`","properties":`+tc.props+`}`, Options{})
		if rec.HTTPStatusCode != tc.http || rec.Status != tc.want {
			t.Errorf("%s %q: %d %d, want %d %d", tc.props, tc.sig, rec.HTTPStatusCode, rec.Status, tc.http, tc.want)
		}
	}
}

func TestVault(t *testing.T) {
	const blob = "insights-logs-auditevent/resourceId=/SUBSCRIPTIONS/SUB-1/RESOURCEGROUPS/RG-1/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/FROMBLOB/y=2024/m=04/d=03/h=14/m=00/PT1H.json"
	tests := []struct {
		name, rid      string // rid: resourceId value; "" = absent
		sub, rg, vault string
	}{
		{"resourceId", `"/SUBSCRIPTIONS/S/RESOURCEGROUPS/R/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/MYVAULT"`, "S", "R", "myvault"},
		{"lower case segments", `"/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/MyVault"`, "s", "r", "myvault"},
		{"managed HSM: last segment", `"/SUBSCRIPTIONS/S/RESOURCEGROUPS/R/PROVIDERS/MICROSOFT.KEYVAULT/MANAGEDHSMS/HSM1"`, "S", "R", "hsm1"},
		{"masked", `"/SUBSCRIPTIONS/xxxxxx/xxxxx/xxxxxxx/xxxxx/MICROSOFT.KEYVAULT/VAULTS/xxxxxxx"`, "xxxxxx", "", "xxxxxxx"},
		{"missing: blob path", "", "SUB-1", "RG-1", "fromblob"},
		{"null: blob path", `null`, "SUB-1", "RG-1", "fromblob"},
		{"empty: blob path", `""`, "SUB-1", "RG-1", "fromblob"},
	}
	for _, tc := range tests {
		line := `{` + tm
		if tc.rid != "" {
			line += `,"resourceId":` + tc.rid
		}
		rec := one(t, line+`}`, Options{Blob: blob})
		if rec.SubscriptionID != tc.sub || rec.ResourceGroup != tc.rg || rec.Vault != tc.vault {
			t.Errorf("%s: %q %q %q, want %q %q %q", tc.name, rec.SubscriptionID, rec.ResourceGroup, rec.Vault, tc.sub, tc.rg, tc.vault)
		}
	}
	if rec := one(t, `{`+tm+`}`, Options{Blob: "not/a/monitor/path.json"}); rec.Vault != "" {
		t.Errorf("no resourceId, no usable blob name: vault %q", rec.Vault)
	}
}

func TestParseBlobPath(t *testing.T) {
	const base = "resourceId=/SUBSCRIPTIONS/F40A1F1D-XXXX/RESOURCEGROUPS/INTEGRATION/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/MYVAULT"
	hour := time.Date(2024, 4, 3, 14, 0, 0, 0, time.UTC)
	want := BlobPath{SubscriptionID: "F40A1F1D-XXXX", ResourceGroup: "INTEGRATION", Vault: "myvault", Hour: hour}
	noHour := want
	noHour.Hour = time.Time{}
	tests := []struct {
		name string
		want BlobPath
		ok   bool
	}{
		{base + "/y=2024/m=04/d=03/h=14/m=00/PT1H.json", want, true},
		{"insights-logs-auditevent/" + base + "/y=2024/m=04/d=03/h=14/m=00/PT1H.json", want, true},
		{base + "/y=2024/m=04/d=03/h=14", want, true},
		{base + "/y=2024/m=04/d=03/h=14/m=00", want, true},
		{base + "/y=2024/m=04/d=03/h=14/PT1H.json", want, true},
		{base, noHour, true},
		{strings.ToLower(base) + "/y=2024/m=04/d=03/h=14/m=00/PT1H.json", BlobPath{SubscriptionID: "f40a1f1d-xxxx", ResourceGroup: "integration", Vault: "myvault", Hour: hour}, true},
		{base + "/y=2024/m=02/d=29/h=00/m=00/PT1H.json", BlobPath{SubscriptionID: "F40A1F1D-XXXX", ResourceGroup: "INTEGRATION", Vault: "myvault", Hour: time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)}, true},
		{base + "/y=2023/m=02/d=29/h=00/m=00/PT1H.json", BlobPath{}, false},
		{base + "/y=2024/m=13/d=03/h=14/m=00/PT1H.json", BlobPath{}, false},
		{base + "/y=2024/m=04/d=03/h=24/m=00/PT1H.json", BlobPath{}, false},
		{base + "/y=2024/m=4/d=03/h=14/m=00/PT1H.json", BlobPath{}, false},
		{base + "/y=2024/m=04/d=03", BlobPath{}, false},
		{base + "/y=2024/m=04/d=03/h=14/m=00/PT1H.json/extra", BlobPath{}, false},
		{base + "/", BlobPath{}, false},
		{"other-container/" + base, BlobPath{}, false},
		{"resourceId=/SUBSCRIPTIONS//RESOURCEGROUPS/R/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/V", BlobPath{}, false},
		{"resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/R/PROVIDERS/MICROSOFT.STORAGE/VAULTS/V", BlobPath{}, false},
		{"PT1H.json", BlobPath{}, false},
		{"", BlobPath{}, false},
		// Identities of blobs in other logs accounts (issue 17).
		{"@logstwo/" + base + "/y=2024/m=04/d=03/h=14/m=00/PT1H.json", want, true},
		{"@logstwo/insights-logs-auditevent/" + base + "/y=2024/m=04/d=03/h=14/m=00/PT1H.json", want, true},
		{"@LogsTwo/" + base + "/y=2024/m=04/d=03/h=14/m=00/PT1H.json", BlobPath{}, false},
		{"@x/" + base, BlobPath{}, false},
	}
	for _, tc := range tests {
		got, ok := ParseBlobPath(tc.name)
		if ok != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v %v, want %+v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// A blob's identity names its logs account, except in the first; the
// same path in two accounts is two identities, and no bare path of the
// first account spells another account's identity.
func TestBlobID(t *testing.T) {
	const path = "resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/R/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/V/y=2024/m=04/d=03/h=14/m=00/PT1H.json"
	tests := []struct {
		account, path string
		id            string
		ok            bool
	}{
		{"", path, path, true},
		{"logstwo", path, "@logstwo/" + path, true},
		{"stkvlogs0123456789abcdef", path, "@stkvlogs0123456789abcdef/" + path, true},
		{"", "@logstwo/" + path, "", false}, // would be logstwo's blob
		{"", "", "", false},
		{"logstwo", "", "", false},
		{"LogsTwo", path, "", false},
		{"ab", path, "", false},
		{"a/b", path, "", false},
		{"stkvlogs0123456789abcdef0", path, "", false},
	}
	for _, tt := range tests {
		id, ok := BlobID(tt.account, tt.path)
		if ok != tt.ok || ok && id != tt.id {
			t.Errorf("BlobID(%q, %q) = %q %v, want %q %v", tt.account, tt.path, id, ok, tt.id, tt.ok)
			continue
		}
		if !ok {
			continue
		}
		if a, p := SplitBlobID(id); a != tt.account || p != tt.path {
			t.Errorf("SplitBlobID(%q) = %q %q, want %q %q", id, a, p, tt.account, tt.path)
		}
	}
	one, _ := BlobID("", path)
	two, _ := BlobID("logstwo", path)
	if one == two {
		t.Error("the same path in two accounts has one identity")
	}
	for _, id := range []string{"@x/y", "@/y", "@logstwo", "plain/path"} {
		if a, p := SplitBlobID(id); a != "" || p != id {
			t.Errorf("SplitBlobID(%q) = %q %q: not a qualified identity", id, a, p)
		}
	}
}

// A record read from a blob of another account says so in its source;
// one of the first account takes the Reader's Account.
func TestRecordAccount(t *testing.T) {
	const path = "resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/R/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/PATHVAULT/y=2024/m=04/d=03/h=14/m=00/PT1H.json"
	rec := one(t, `{"time":"2024-04-03T14:03:10Z"}`, Options{Blob: "@logstwo/" + path, Account: "logsone"})
	if rec.Account != "logstwo" || rec.Vault != "pathvault" {
		t.Errorf("qualified blob: account %q vault %q", rec.Account, rec.Vault)
	}
	out := string(AppendJSON(nil, &rec))
	if !strings.Contains(out, `"source":{"account":"logstwo","blob":"`+path+`","offset":0}`) {
		t.Errorf("source of a qualified blob: %s", out)
	}
	rec = one(t, `{"time":"2024-04-03T14:03:10Z"}`, Options{Blob: path, Account: "logsone"})
	if rec.Account != "logsone" {
		t.Errorf("first account's blob: account %q", rec.Account)
	}
	var d Decoder
	d.Account = "logsone"
	var dec Record
	if err := d.Decode([]byte(`{"time":"2024-04-03T14:03:10Z"}`), "@logstwo/"+path, 7, &dec); err != nil || dec.Account != "logstwo" {
		t.Errorf("Decoder: account %q, %v", dec.Account, err)
	}
	if err := d.Decode([]byte(`{"time":"2024-04-03T14:03:10Z"}`), path, 7, &dec); err != nil || dec.Account != "logsone" {
		t.Errorf("Decoder, first account: account %q, %v", dec.Account, err)
	}
}

func TestTime(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
		out  string // FormatTime of the result
	}{
		{"2024-04-03T14:03:10.7886260Z", time.Date(2024, 4, 3, 14, 3, 10, 788626000, time.UTC), "2024-04-03T14:03:10.7886260Z"},
		{"2024-12-31T23:59:59.9999999Z", time.Date(2024, 12, 31, 23, 59, 59, 999999900, time.UTC), "2024-12-31T23:59:59.9999999Z"},
		{"2025-01-01T00:00:00Z", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), "2025-01-01T00:00:00.0000000Z"},
		{"2025-01-01T00:00:00.0000000Z", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), "2025-01-01T00:00:00.0000000Z"},
		{"2024-04-03T14:03:10.5Z", time.Date(2024, 4, 3, 14, 3, 10, 500000000, time.UTC), "2024-04-03T14:03:10.5000000Z"},
		{"2024-04-03T14:03:10.123456789Z", time.Date(2024, 4, 3, 14, 3, 10, 123456789, time.UTC), "2024-04-03T14:03:10.1234567Z"},
		{"2024-04-03T14:03:10.12345678912Z", time.Date(2024, 4, 3, 14, 3, 10, 123456789, time.UTC), "2024-04-03T14:03:10.1234567Z"},
		{"2024-04-03T16:03:10.5+02:00", time.Date(2024, 4, 3, 14, 3, 10, 500000000, time.UTC), "2024-04-03T14:03:10.5000000Z"},
		{"2024-04-03T00:30:00-01:00", time.Date(2024, 4, 3, 1, 30, 0, 0, time.UTC), "2024-04-03T01:30:00.0000000Z"},
		{"2024-01-01T00:30:00+01:00", time.Date(2023, 12, 31, 23, 30, 0, 0, time.UTC), "2023-12-31T23:30:00.0000000Z"},
		{"2024-02-29T12:00:00Z", time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC), "2024-02-29T12:00:00.0000000Z"},
	}
	for _, tc := range tests {
		rec := one(t, `{"time":"`+tc.in+`"}`, Options{})
		if !rec.Time.Equal(tc.want) || rec.Time.Location() != time.UTC {
			t.Errorf("%s: %v, want %v", tc.in, rec.Time, tc.want)
		}
		if got := FormatTime(rec.Time); got != tc.out {
			t.Errorf("FormatTime(%s) = %s, want %s", tc.in, got, tc.out)
		}
		if got := FormatTime(rec.Time); got != rec.Time.UTC().Format(TimeLayout) {
			t.Errorf("FormatTime(%s) = %s, time.Format gives %s", tc.in, got, rec.Time.Format(TimeLayout))
		}
	}
	for _, bad := range []string{"", "2024-04-03", "2024-04-03T14:03:10", "2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2024-04-03T24:00:00Z", "2024-04-03T14:60:00Z", "2024-04-03T14:03:60Z", "2024-04-03T14:03:10.Z", "2024-04-03 14:03:10Z", "yesterday", "2024-04-03T14:03:10.5z0"} {
		res := readAll(t, strings.NewReader(`{"time":"`+bad+`"}`), Options{Complete: true})
		if len(res.recs) != 0 || len(res.errs) != 1 || !strings.HasPrefix(res.errs[0].Reason, "time: cannot parse") {
			t.Errorf("time %q accepted or wrong error: %v", bad, res.errs)
		}
	}
	// Other zones are shown in UTC.
	loc := time.FixedZone("x", -5*3600)
	if got := FormatTime(time.Date(2024, 1, 1, 20, 0, 0, 0, loc)); got != "2024-01-02T01:00:00.0000000Z" {
		t.Errorf("FormatTime in another zone: %s", got)
	}
	if got := FormatTime(time.Date(12345, 1, 1, 0, 0, 0, 0, time.UTC)); got != time.Date(12345, 1, 1, 0, 0, 0, 0, time.UTC).Format(TimeLayout) {
		t.Errorf("FormatTime year 12345: %s", got)
	}
}

func TestStrings(t *testing.T) {
	rec := one(t, `{`+tm+`,"operationName":"a\"b\\c\/d\n\t\u00e9\ud83d\ude00\ud800x","category":5,"resultType":null,"resultDescription":"line1\nline2","callerIpAddress":"caf`+"\xff"+`e"}`, Options{})
	if want := "a\"b\\c/d\n\té😀\uFFFDx"; rec.OperationName != want {
		t.Errorf("unescaped %q, want %q", rec.OperationName, want)
	}
	if rec.Category != "" || rec.ResultType != "" {
		t.Errorf("non-string values should be empty: %q %q", rec.Category, rec.ResultType)
	}
	if rec.CallerIPAddress != "caf\uFFFDe" {
		t.Errorf("invalid UTF-8: %q", rec.CallerIPAddress)
	}
	if rec.ResultDescription != "line1\nline2" {
		t.Errorf("resultDescription %q", rec.ResultDescription)
	}
}

func TestExtra(t *testing.T) {
	rec := one(t, `{`+tm+`,"Level":"Informational", "location" : "westeurope","x":{"y":[1, 2]},"ti\u006de":"2024-04-03T14:03:10.7886260Z"}`, Options{})
	var got map[string]any
	if err := json.Unmarshal(rec.Extra, &got); err != nil {
		t.Fatalf("Extra %s: %v", rec.Extra, err)
	}
	want := map[string]any{"Level": "Informational", "location": "westeurope", "x": map[string]any{"y": []any{1.0, 2.0}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Extra %s", rec.Extra)
	}
	if out := AppendJSON(nil, &rec); !strings.Contains(string(out), `"extra":{"Level":"Informational","location":"westeurope","x":{"y":[1, 2]}}`) {
		t.Errorf("AppendJSON: %s", out)
	}
}
