package query

import (
	"context"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/parse"
)

func TestInjectionAttempts(t *testing.T) {
	e := fixtureEnv(t)
	alice := index.EncodeKeyPart(aliceOID)
	refused := []string{
		"vault=x' or PartitionKey ne '",
		"vault=vault1' or Vault ne 'x",
		"vault=vault1%27%29%20or%20%28true",
		"ip=10.0.0.1' or CallerIpAddress ne '",
		"vault=vault1&operation=SecretGet' or OperationName ne '",
		"vault=vault1&operation=SecretGet) or (true",
		"vault=vault1&status=200 or Status ne 0",
		"vault=vault1&status=4xx) or (Status gt 0",
	}
	for _, q := range refused {
		t.Run("refused "+q, func(t *testing.T) {
			_, err := ParseEvents(mustValues(t, q), time.Now(), Limits{})
			var pe *ParamError
			if !errors.As(err, &pe) {
				t.Fatalf("err %v, want a ParamError", err)
			}
		})
	}
	// Free text (caller, object) is a key: the query runs and finds only
	// that exact key, which nothing has.
	empty := []string{
		"caller=x' or PartitionKey ne '",
		"caller=' or ''='",
		"caller=" + url.QueryEscape(aliceOID+"' or RowKey ne '"),
		"caller=" + url.QueryEscape(aliceOID+"|20261120"), // '|' is escaped in keys: no partition of alice
		"caller=" + url.QueryEscape(alice[:10]),
		"object=x' or PartitionKey ne '",
		"object=" + url.QueryEscape("db-password' or ObjectName ne '"),
		"object=" + url.QueryEscape("../db-password"),
		"caller=" + url.QueryEscape(aliceOID) + "&object=" + url.QueryEscape("x' or '1' eq '1"),
	}
	for _, q := range empty {
		t.Run("nothing for "+q, func(t *testing.T) {
			e.t = t
			if got, _ := e.events(q + wholeFixture); len(got) != 0 {
				t.Fatalf("%d events: %v", len(got), got)
			}
			if st := e.stats(q + wholeFixture); st.Total != 0 {
				t.Fatalf("stats total %d", st.Total)
			}
		})
	}
}

func TestFilterLiteralsQuoted(t *testing.T) {
	w := Window{From: at("2026-11-20T00:00:00Z"), To: at("2026-11-21T00:00:00Z")}
	p := newPlan(Selector{Caller: "o'brien@contoso.com", Vault: "v1", IP: "10.0.0.1"}, Filter{Operations: []string{"SecretGet"}}, w)
	for _, f := range []string{p.postingFilter(p.days[0], span{first: 0, last: 23}), p.postingFilter(p.days[0], span{first: 3, last: 5, timed: true, lo: 1, hi: 2})} {
		want := "PartitionKey eq 'c|20261120' and RowKey ge 'o''brien@contoso.com|'"
		if !strings.HasPrefix(f, want) {
			t.Fatalf("filter %s\nwant it to start with %s", f, want)
		}
		// Outside literals, the filter holds only our own syntax.
		var outside strings.Builder
		in := false
		for i := 0; i < len(f); i++ {
			switch {
			case f[i] == '\'' && in && i+1 < len(f) && f[i+1] == '\'':
				i++ // a doubled quote inside a literal
			case f[i] == '\'':
				in = !in
			case !in:
				outside.WriteByte(f[i])
			}
		}
		if in {
			t.Fatalf("unbalanced quotes in %s", f)
		}
		if o := outside.String(); strings.Contains(o, "brien") || strings.Contains(o, "contoso") {
			t.Fatalf("caller text outside a literal: %s", o)
		}
	}
}

// page1 returns the first page's continuation of query.
func (e *env) page1(query string) string {
	e.t.Helper()
	eq, err := ParseEvents(mustValues(e.t, query), time.Now(), Limits{})
	if err != nil {
		e.t.Fatal(err)
	}
	next, err := e.q.Events(context.Background(), eq, func(*parse.Record) error { return nil })
	if err != nil || next == "" {
		e.t.Fatalf("page 1 of %s: %q %v", query, next, err)
	}
	return next
}

// run returns the vaults of the events query gives with continuation tok.
func (e *env) run(query, tok string) ([]string, error) {
	v := mustValues(e.t, query)
	v.Set(ParamContinuation, tok)
	eq, err := ParseEvents(v, time.Now(), Limits{})
	if err != nil {
		return nil, err
	}
	var vaults []string
	_, err = e.q.Events(context.Background(), eq, func(r *parse.Record) error {
		vaults = append(vaults, r.Vault)
		return nil
	})
	return vaults, err
}

func forge(t *testing.T, tok string, change func(*token)) string {
	t.Helper()
	tk, err := decodeToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	change(tk)
	return tk.encode()
}

func TestTamperedContinuations(t *testing.T) {
	e := fixtureEnv(t)
	q1 := "vault=vault1&limit=2" + wholeFixture
	tok := e.page1(q1)
	if vaults, err := e.run(q1, tok); err != nil || len(vaults) != 2 {
		t.Fatalf("the untouched token: %v %v", vaults, err)
	}
	// A RowKey of vault2's, inside the window, and vault2's partition in
	// the service's own continuation format (Azurite: base64 of the key).
	var v2rk string
	eq, _ := ParseEvents(mustValues(t, "vault=vault2&limit=1"+wholeFixture), time.Now(), Limits{})
	p2 := newPlan(eq.Selector, eq.Filter, eq.Window)
	ents, _, err := e.q.page(context.Background(), listing{table: p2.table, filter: p2.partitionFilter(p2.days[0], ""), top: 1}, srvPos{})
	if err != nil || len(ents) != 1 {
		t.Fatalf("%v %d", err, len(ents))
	}
	var r row
	if err := decodeRow(ents[0], &r); err != nil {
		t.Fatal(err)
	}
	v2rk = r.RowKey
	b64 := base64.StdEncoding.EncodeToString

	flip := []byte(tok)
	flip[len(flip)/2] ^= 0x01
	if flip[len(flip)/2] == '-' || flip[len(flip)/2] == '_' {
		flip[len(flip)/2] = 'A'
	}
	refused := []struct {
		name, query, tok string
	}{
		{"a character changed", q1, string(flip)},
		{"cut", q1, tok[:len(tok)-3]},
		{"extended", q1, tok + "AAAA"},
		{"not base64", q1, "!!" + tok},
		{"empty JSON", q1, (&token{}).encode()},
		{"another vault's query", "vault=vault2&limit=2" + wholeFixture, tok},
		{"another filter", "vault=vault1&status=200&limit=2" + wholeFixture, tok},
		{"another window", "vault=vault1&limit=2&from=2026-11-20T01:00:00Z&to=2026-11-22T00:00:00Z", tok},
		{"day outside the window", q1, forge(t, tok, func(tk *token) { tk.D = "20261119" })},
		{"day not a day", q1, forge(t, tok, func(tk *token) { tk.D = "20261120' or 'a' eq 'a" })},
		{"position outside the window", q1, forge(t, tok, func(tk *token) { tk.A = index.RowKey(at("2026-11-25T00:00:00Z"), "0123456789abcdef", 1) })},
		{"position with a quote", q1, forge(t, tok, func(tk *token) { tk.A = tk.A[:40] + "'" + tk.A[41:] })},
		{"window too long", strings.Split(q1, "&from")[0], forge(t, tok, func(tk *token) { tk.F = at("2026-01-01T00:00:00Z").UnixNano() })},
		{"window reversed", strings.Split(q1, "&from")[0], forge(t, tok, func(tk *token) { tk.F, tk.T = tk.T, tk.F })},
		{"server position without its partition", q1, forge(t, tok, func(tk *token) { tk.NR = "cjU=" })},
		{"server position with a space", q1, forge(t, tok, func(tk *token) { tk.NP, tk.NR = "a b", "c" })},
		{"another version", q1, forge(t, tok, func(tk *token) { tk.V = 2 })},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			vaults, err := e.run(tt.query, tt.tok)
			var pe *ParamError
			if !errors.As(err, &pe) || pe.Param != ParamContinuation {
				t.Fatalf("got %v, %v; want a continuation ParamError", vaults, err)
			}
		})
	}
	// Forged positions that pass validation still read only the query's
	// own partitions: the filter is rebuilt from the query, never from the
	// token.
	inside := []struct{ name, tok string }{
		{"vault2's RowKey", forge(t, tok, func(tk *token) { tk.A = v2rk })},
		{"vault2's partition as the service position", forge(t, tok, func(tk *token) {
			tk.A, tk.NP, tk.NR = "", b64([]byte("vault2|20261120")), b64([]byte(v2rk))
		})},
		{"an earlier partition as the service position", forge(t, tok, func(tk *token) {
			tk.A, tk.NP, tk.NR = "", b64([]byte("a")), b64([]byte("a"))
		})},
	}
	for _, tt := range inside {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			vaults, err := e.run(q1, tt.tok)
			var pe *ParamError
			if err != nil && !errors.As(err, &pe) {
				t.Fatal(err)
			}
			for _, v := range vaults {
				if v != "vault1" {
					t.Fatalf("a forged token read %s's rows", v)
				}
			}
			t.Logf("%d events of vault1, err %v", len(vaults), err)
		})
	}
}

func TestContinuationKeepsDefaultWindow(t *testing.T) {
	e := newEnv(t)
	now := time.Now().UTC()
	var evs []ev
	for i := 0; i < 5; i++ {
		evs = append(evs, ev{t: now.Add(-time.Duration(i+1) * time.Hour), ip: "10.7.7.7"})
	}
	e.load(0, evs)
	tok := e.page1("ip=10.7.7.7&limit=2")
	// Later, with the same URL: the window is the first page's.
	v := mustValues(t, "ip=10.7.7.7&limit=2")
	v.Set(ParamContinuation, tok)
	eq, err := ParseEvents(v, now.Add(30*time.Minute), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.Events(context.Background(), eq, func(*parse.Record) error { return nil }); err != nil {
		t.Fatalf("the next page, half an hour later: %v", err)
	}
}
