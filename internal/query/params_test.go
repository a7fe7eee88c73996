package query

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

var now = at("2026-11-21T12:34:56.789Z")

func TestParseEventsDefaults(t *testing.T) {
	q, err := ParseEvents(url.Values{"vault": {" MyVault "}}, now, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if q.Vault != "myvault" || q.Limit != DefaultLimit || !q.To.Equal(now) || !q.From.Equal(now.Add(-24*time.Hour)) || q.FromGiven || q.ToGiven {
		t.Fatalf("%+v", q)
	}
	q, err = ParseEvents(mustValues(t, "ip=10.0.0.1&to=2026-11-20T00:00:00%2B01:00"), now, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !q.To.Equal(at("2026-11-19T23:00:00Z")) || !q.From.Equal(at("2026-11-18T23:00:00Z")) || q.To.Location() != time.UTC {
		t.Fatalf("to alone: %v – %v", q.From, q.To)
	}
	q, err = ParseEvents(mustValues(t, "object=x&from=2026-11-21T00:00:00Z&operation=secretget,SecretGet,Custom1&status=4xx,403,403"), now, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !q.To.Equal(now) || strings.Join(q.Operations, ",") != "Custom1,SecretGet" || len(q.Statuses) != 2 || q.Statuses[0] != (StatusMatch{400, 499}) {
		t.Fatalf("%+v", q)
	}
}

func TestParamErrors(t *testing.T) {
	long := strings.Repeat("a", 600)
	tests := []struct {
		query string
		param string // the ParamError's Param
		says  string // part of the message
	}{
		{"", "", "at least one of vault, caller, ip or object"},
		{"from=2026-11-20T00:00:00Z", "", "at least one of"},
		{"vault=v&bogus=1", "", `unknown parameter "bogus"; accepted: vault, caller`},
		{"vault=v&vault=w", "vault", "given 2 times"},
		{"vault=", "vault", "vault name"},
		{"vault=a_b", "vault", "letters, digits and hyphens"},
		{"vault=" + long, "vault", "at most 127"},
		{"caller=" + long, "caller", "1 to 512 bytes"},
		{"caller=a%00b", "caller", "control characters"},
		{"caller=%ff", "caller", "UTF-8"},
		{"ip=10.0.0", "ip", "IPv4 or IPv6"},
		{"ip=fe80::1%25eth0", "ip", "IPv4 or IPv6"},
		{"ip=host.example", "ip", "IPv4 or IPv6"},
		{"object=", "object", "secret, key or certificate name"},
		{"vault=v&from=yesterday", "from", "RFC 3339"},
		{"vault=v&from=1969-12-31T23:59:59Z&to=1970-01-02T00:00:00Z", "from", "between 1970 and 2200"},
		{"vault=v&to=2026-11-20", "to", "RFC 3339"},
		{"vault=v&from=2026-11-20T00:00:00Z&to=2026-11-20T00:00:00Z", "to", "after from"},
		{"vault=v&from=2026-11-22T00:00:00Z", "from", "not in the past"},
		{"vault=v&from=2026-10-01T00:00:00Z&to=2026-11-01T00:00:01Z", "", "longer than 31 days"},
		{"vault=v&operation=", "operation", "1 to 50"},
		{"vault=v&operation=Secret Get", "operation", "letters and digits"},
		{"vault=v&operation=" + strings.Repeat("A,", 51), "operation", "1 to 50"},
		{"vault=v&status=6xx", "status", "403 or 4xx"},
		{"vault=v&status=99", "status", "403 or 4xx"},
		{"vault=v&status=4x", "status", "403 or 4xx"},
		{"vault=v&status=,", "status", "1 to 50"},
		{"vault=v&limit=0", "limit", "from 1 to 1000"},
		{"vault=v&limit=1001", "limit", "from 1 to 1000"},
		{"vault=v&limit=ten", "limit", "from 1 to 1000"},
		{"vault=v&continuation=", "continuation", "previous page"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			_, err := ParseEvents(mustValues(t, tt.query), now, Limits{})
			var pe *ParamError
			if !errors.As(err, &pe) {
				t.Fatalf("err %v, want a ParamError", err)
			}
			if pe.Param != tt.param || !strings.Contains(pe.Error(), tt.says) {
				t.Fatalf("ParamError{%q, %q}, want param %q saying %q", pe.Param, pe.Msg, tt.param, tt.says)
			}
		})
	}
}

func TestParseStatsAndDetections(t *testing.T) {
	sq, err := ParseStats(mustValues(t, "caller=a&by=HOUR&limit=10000"), now, Limits{MaxDays: 2})
	if err != nil || sq.By != ByHour || sq.Limit != 10000 {
		t.Fatalf("%+v %v", sq, err)
	}
	if sq, err := ParseStats(mustValues(t, "vault=v"), now, Limits{}); err != nil || sq.By != ByOperation || sq.Limit != DefaultStatsLimit {
		t.Fatalf("defaults: %+v %v", sq, err)
	}
	for q, says := range map[string]string{
		"vault=v&by=minute":    "accepted: operation, caller, ip, status, object, hour, day",
		"vault=v&limit=10001":  "from 1 to 10000",
		"vault=v&continuation": "unknown parameter",
		"vault=v&from=2026-11-18T00:00:00Z&to=2026-11-20T00:00:01Z": "longer than 2 days",
	} {
		if _, err := ParseStats(mustValues(t, q), now, Limits{MaxDays: 2}); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("%s: %v, want %q", q, err, says)
		}
	}
	dq, err := ParseDetections(url.Values{}, now, Limits{})
	if err != nil || dq.Vault != "" || dq.Threshold != DefaultThreshold || dq.SlowMs != DefaultSlowMs {
		t.Fatalf("defaults: %+v %v", dq, err)
	}
	dq, err = ParseDetections(mustValues(t, "vault=KV1&threshold=3&slowMs=250.5"), now, Limits{})
	if err != nil || dq.Vault != "kv1" || dq.Threshold != 3 || dq.SlowMs != 250.5 {
		t.Fatalf("%+v %v", dq, err)
	}
	for q, says := range map[string]string{
		"caller=x":        "unknown parameter",
		"threshold=0":     "from 1 to 1000000",
		"slowMs=-1":       "above 0",
		"slowMs=NaN":      "above 0",
		"vault=x'or'1'eq": "vault name",
	} {
		if _, err := ParseDetections(mustValues(t, q), now, Limits{}); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("%s: %v, want %q", q, err, says)
		}
	}
}

func TestDaysNewestFirst(t *testing.T) {
	tests := []struct {
		from, to string
		want     string
	}{
		{"2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z", "20261120"},
		{"2026-11-20T10:00:00Z", "2026-11-21T00:00:00Z", "20261120"},
		{"2026-11-20T10:00:00Z", "2026-11-21T00:00:00.0000001Z", "20261121,20261120"},
		{"2026-11-19T23:59:59.9999999Z", "2026-11-21T00:00:00Z", "20261120,20261119"},
		{"2026-12-31T00:00:00Z", "2027-01-02T00:00:00Z", "20270101,20261231"},
	}
	for _, tt := range tests {
		if got := strings.Join(days(Window{From: at(tt.from), To: at(tt.to)}), ","); got != tt.want {
			t.Errorf("days(%s, %s) = %s, want %s", tt.from, tt.to, got, tt.want)
		}
	}
}

func TestCanonicalOperation(t *testing.T) {
	for in, want := range map[string]string{"secretget": "SecretGet", "KEYPURGE": "KeyPurge", "SomethingNew": "SomethingNew"} {
		if got := CanonicalOperation(in); got != want {
			t.Errorf("CanonicalOperation(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParseParams: no input panics, and whatever parses obeys the rules
// a plan relies on.
func FuzzParseParams(f *testing.F) {
	for _, s := range []string{
		"vault=v", "caller=o'brien@contoso.com&vault=v&from=2026-11-20T00:00:00Z&to=2026-11-21T00:00:00Z",
		"ip=2001:db8::1&operation=SecretGet,KeyGet&status=4xx,200&limit=5", "object=%00", "vault=x' or PartitionKey ne '",
		"vault=v&by=day&threshold=3&slowMs=1e3", "vault=v&continuation=abc",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		if q, err := ParseEvents(v, now, Limits{}); err == nil {
			checkParsed(t, q.Selector, q.Filter, q.Window)
			if q.Limit < 1 || q.Limit > MaxLimit {
				t.Fatalf("limit %d", q.Limit)
			}
		} else if !errors.As(err, new(*ParamError)) {
			t.Fatalf("not a ParamError: %v", err)
		}
		if q, err := ParseStats(v, now, Limits{}); err == nil {
			checkParsed(t, q.Selector, q.Filter, q.Window)
		}
		if q, err := ParseDetections(v, now, Limits{}); err == nil {
			checkParsed(t, Selector{Vault: q.Vault}, Filter{}, q.Window)
		}
	})
}

func checkParsed(t *testing.T, sel Selector, f Filter, w Window) {
	t.Helper()
	if !w.To.After(w.From) || w.To.Sub(w.From) > DefaultMaxDays*24*time.Hour {
		t.Fatalf("window %v – %v", w.From, w.To)
	}
	if strings.ContainsAny(sel.Vault, "' ()") || strings.ContainsAny(sel.IP, "' ()") {
		t.Fatalf("selector %+v", sel)
	}
	for _, op := range f.Operations {
		if strings.ContainsAny(op, "' ()") {
			t.Fatalf("operation %q", op)
		}
	}
	if sel == (Selector{}) {
		return
	}
	p := newPlan(sel, f, w)
	if n := strings.Count(strings.ReplaceAll(p.partitionFilter(p.days[0], ""), "''", ""), "'"); n%2 != 0 {
		t.Fatalf("odd quotes in %s", p.partitionFilter(p.days[0], ""))
	}
	if len(p.days) == 0 || len(p.days) > DefaultMaxDays+1 {
		t.Fatalf("%d days", len(p.days))
	}
}

// FuzzDecodeToken: no input panics; a token that decodes has exactly one
// spelling, and validation against a plan never panics.
func FuzzDecodeToken(f *testing.F) {
	p := newPlan(Selector{Vault: "v"}, Filter{}, Window{From: at("2026-11-20T00:00:00Z"), To: at("2026-11-21T00:00:00Z")})
	good := &token{V: tokenVersion, Q: p.fingerprint, F: at("2026-11-20T00:00:00Z").UnixNano(), T: at("2026-11-21T00:00:00Z").UnixNano(), D: "20261120"}
	f.Add(good.encode())
	good.A, good.NP, good.NR = "3155378975999999999_0123456789abcdef_000000000001", "YQ==", "Yg=="
	f.Add(good.encode())
	f.Add("")
	f.Add("eyJ2IjoxfQ")
	f.Fuzz(func(t *testing.T, s string) {
		tk, err := decodeToken(s)
		if err != nil {
			if !errors.As(err, new(*ParamError)) {
				t.Fatalf("not a ParamError: %v", err)
			}
			return
		}
		if tk.encode() != s {
			t.Fatalf("token %q re-encodes as %q", s, tk.encode())
		}
		_ = p.check(tk)
		_, _ = tk.window(Window{}, Limits{})
	})
}
