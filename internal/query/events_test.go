package query

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/parse"
)

// The fixture spans a day boundary (2026-11-20 → 21) and two vaults, with
// callers known by objectId, UPN and appId, IPv4 and IPv6 callers, objects
// in two cases, and every outcome the filters distinguish.
var fixtureStart = at("2026-11-20T18:00:00Z")

const (
	aliceOID = "0b5d2c4e-aaaa-4bbb-8ccc-000000000001"
	aliceUPN = "Alice@Contoso.com"
	bobApp   = "9f3c0000-bbbb-4ccc-8ddd-000000000002"
	carolUPN = "carol@contoso.com"
)

func fixture() []ev {
	var evs []ev
	ops := []string{"SecretGet", "SecretGet", "KeyGet", "SecretSet", "SecretList", "Authentication", "SecretDelete"}
	statuses := []int{200, 200, 403, 404, 200, 401, 500, 200}
	ips := []string{"10.0.0.1", "10.0.0.2", "2001:db8::1", ""}
	objects := []string{"db-password", "DB-Password", "api-key", ""}
	for i := 0; i < 90; i++ {
		// A fixed pseudo-random choice per field, so that fields are not
		// correlated with each other or with the vault.
		pick := func(n, salt int) int { return (i*i*salt + i*(salt+11) + salt) % 97 % n }
		e := ev{
			// 7 min 13 s apart: 90 events cover ~11 h, across midnight UTC.
			t:      fixtureStart.Add(time.Duration(i) * (7*time.Minute + 13*time.Second)).Add(time.Duration(i*37) * time.Microsecond),
			vault:  []string{"vault1", "vault2"}[i%2],
			op:     ops[pick(len(ops), 3)],
			status: statuses[pick(len(statuses), 5)],
			ip:     ips[pick(len(ips), 7)],
			object: objects[pick(len(objects), 13)],
			tls:    "TLS1_2",
			client: "go-test",
		}
		switch pick(3, 17) {
		case 0:
			e.oid, e.upn, e.appid = aliceOID, aliceUPN, bobApp
		case 1:
			e.appid = bobApp
		case 2:
			e.upn = carolUPN
		}
		evs = append(evs, e)
	}
	return evs
}

func hasCaller(x ev, c string) bool {
	return strings.EqualFold(x.oid, c) || strings.EqualFold(x.upn, c) || strings.EqualFold(x.appid, c)
}

// The fixture is ingested once and shared by the read-only tests below.
var (
	sharedOnce sync.Once
	shared     *env
)

func fixtureEnv(t *testing.T) *env {
	t.Helper()
	sharedOnce.Do(func() {
		e := newEnv(t)
		e.load(0, fixture())
		e.t = nil
		shared = e
	})
	if shared == nil {
		t.Skip("fixture not loaded (see the first test's failure)")
	}
	e := *shared
	e.t = t
	return &e
}

const wholeFixture = "&from=2026-11-20T00:00:00Z&to=2026-11-22T00:00:00Z"

func TestEventsEveryParameter(t *testing.T) {
	e := fixtureEnv(t)
	evs := fixture()
	t5, t40 := evs[5].norm().t, evs[40].norm().t
	tests := []struct {
		query string
		match func(ev) bool
	}{
		{"vault=vault1", func(x ev) bool { return x.vault == "vault1" }},
		{"vault=VAULT2", func(x ev) bool { return x.vault == "vault2" }},
		{"vault=nosuchvault", func(x ev) bool { return false }},
		{"caller=" + aliceOID, func(x ev) bool { return hasCaller(x, aliceOID) }},
		{"caller=alice@contoso.COM", func(x ev) bool { return hasCaller(x, aliceUPN) }},
		{"caller=" + bobApp, func(x ev) bool { return hasCaller(x, bobApp) }},
		{"ip=10.0.0.1", func(x ev) bool { return x.ip == "10.0.0.1" }},
		{"ip=2001:0DB8:0:0::1", func(x ev) bool { return x.ip == "2001:db8::1" }},
		{"object=db-PASSWORD", func(x ev) bool { return strings.EqualFold(x.object, "db-password") }},
		{"object=api-key&vault=vault1", func(x ev) bool { return x.object == "api-key" && x.vault == "vault1" }},
		{"caller=" + carolUPN + "&vault=vault2", func(x ev) bool { return hasCaller(x, carolUPN) && x.vault == "vault2" }},
		{"caller=" + bobApp + "&object=DB-password", func(x ev) bool { return hasCaller(x, bobApp) && strings.EqualFold(x.object, "db-password") }},
		{"caller=" + bobApp + "&ip=10.0.0.2&vault=vault1", func(x ev) bool { return hasCaller(x, bobApp) && x.ip == "10.0.0.2" && x.vault == "vault1" }},
		{"object=db-password&ip=10.0.0.1", func(x ev) bool { return strings.EqualFold(x.object, "db-password") && x.ip == "10.0.0.1" }},
		{"ip=10.0.0.2&vault=vault1", func(x ev) bool { return x.ip == "10.0.0.2" && x.vault == "vault1" }},
		{"vault=vault1&operation=secretget,KeyGet", func(x ev) bool {
			return x.vault == "vault1" && (x.op == "SecretGet" || x.op == "KeyGet")
		}},
		{"vault=vault2&status=403", func(x ev) bool { return x.vault == "vault2" && x.status == 403 }},
		{"vault=vault1&status=4xx,5XX", func(x ev) bool { return x.vault == "vault1" && x.status >= 400 }},
		{"caller=" + aliceOID + "&status=200&operation=SecretGet", func(x ev) bool {
			return hasCaller(x, aliceOID) && x.status == 200 && x.op == "SecretGet"
		}},
		// from is inclusive and to exclusive, at the record's exact instant.
		{"vault=vault2&from=" + t5.Format(time.RFC3339Nano) + "&to=" + t40.Format(time.RFC3339Nano), func(x ev) bool {
			return x.vault == "vault2" && !x.t.Before(t5) && x.t.Before(t40)
		}},
		{"vault=vault2&from=" + t5.Add(100*time.Nanosecond).Format(time.RFC3339Nano) + "&to=" + t40.Add(100*time.Nanosecond).Format(time.RFC3339Nano), func(x ev) bool {
			return x.vault == "vault2" && x.t.After(t5) && !x.t.After(t40)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			e.t = t
			q := tt.query
			if !strings.Contains(q, "from=") {
				q += wholeFixture
			}
			got, _ := e.events(q + "&limit=1000")
			w := want(evs, 0, tt.match)
			if len(w) == 0 && !strings.Contains(tt.query, "nosuchvault") {
				t.Fatal("the fixture has no event for this case: the test would prove nothing")
			}
			if strings.Join(got, ",") != strings.Join(w, ",") {
				t.Fatalf("got %d events %v\nwant %d %v", len(got), got, len(w), w)
			}
			// Small pages, across partitions and days, give the same events
			// in the same order.
			paged, pages := e.events(q + "&limit=4")
			if strings.Join(paged, ",") != strings.Join(w, ",") {
				t.Fatalf("paged by 4: %v\nwant %v", paged, w)
			}
			if len(w) > 8 && pages < 3 {
				t.Fatalf("%d events in %d pages of 4", len(w), pages)
			}
		})
	}
}

func TestEventsPagingAcrossDayBoundary(t *testing.T) {
	e := fixtureEnv(t)
	evs := fixture()
	w := want(evs, 0, func(x ev) bool { return x.vault == "vault1" })
	var days = map[string]bool{}
	for _, x := range evs {
		days[x.t.Format(time.DateOnly)] = true
	}
	if len(days) < 2 {
		t.Fatalf("fixture spans %d days; the test needs a day boundary", len(days))
	}
	for _, limit := range []int{1, 3, 44, 45, 46, 1000} {
		got, pages := e.events(fmt.Sprintf("vault=vault1%s&limit=%d", wholeFixture, limit))
		if strings.Join(got, ",") != strings.Join(w, ",") {
			t.Fatalf("limit %d: %v\nwant %v", limit, got, w)
		}
		// A page that ends the data carries no continuation: an exact
		// multiple costs at most one empty page, at a day boundary.
		if maxPages := (len(w)+limit-1)/limit + 1; pages > maxPages {
			t.Errorf("limit %d: %d pages for %d events", limit, pages, len(w))
		}
	}
}

func TestEventsPageBudgetKeepsOrder(t *testing.T) {
	e := fixtureEnv(t)
	e.q = &Querier{Tables: e.tables, MaxPages: 1}
	// Seven days, most empty: a request reads one partition, and pages
	// may be empty while a continuation is given.
	got, pages := e.events("vault=vault1&from=2026-11-16T00:00:00Z&to=2026-11-23T00:00:00Z&limit=1000")
	w := want(fixture(), 0, func(x ev) bool { return x.vault == "vault1" })
	if strings.Join(got, ",") != strings.Join(w, ",") {
		t.Fatalf("%v\nwant %v", got, w)
	}
	if pages < 7 {
		t.Fatalf("%d pages; a budget of one storage page per request needs one per day", pages)
	}
}

func TestEventsDefaultWindowIsLast24Hours(t *testing.T) {
	e := newEnv(t)
	now := time.Now().UTC()
	evs := []ev{
		{t: now.Add(-25 * time.Hour), ip: "10.9.9.9"},
		{t: now.Add(-23 * time.Hour), ip: "10.9.9.9"},
		{t: now.Add(-time.Minute), ip: "10.9.9.9"},
	}
	e.load(0, evs)
	got, _ := e.events("ip=10.9.9.9")
	if strings.Join(got, ",") != "c-000002,c-000001" {
		t.Fatalf("got %v, want the two events of the last 24 hours", got)
	}
}

func TestEventsRecordShape(t *testing.T) {
	e := fixtureEnv(t)
	eq, err := ParseEvents(mustValues(t, "vault=vault1&limit=1"+wholeFixture), time.Now(), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	_, err = e.q.Events(context.Background(), eq, func(r *parse.Record) error {
		got = parse.AppendJSON(got, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The newest vault1 event, as parse gives it from its blob.
	evs := fixture()
	last := len(evs) - 1
	if evs[last].vault != "vault1" {
		last--
	}
	name := blobName("vault1", evs[last].norm().blob)
	p := parse.NewReader(bytes.NewReader(blobContents(0, evs)[name]), parse.Options{Blob: name, Complete: true})
	var rec parse.Record
	for rec.CorrelationID != fmt.Sprintf("c-%06d", last) {
		if err := p.Next(&rec); err != nil {
			t.Fatal(err)
		}
	}
	if w := parse.AppendJSON(nil, &rec); string(got) != string(w) {
		t.Fatalf("event\n%s\nwant the record as parsed\n%s", got, w)
	}
}

func TestEventsEmitErrorStops(t *testing.T) {
	e := fixtureEnv(t)
	eq, err := ParseEvents(mustValues(t, "vault=vault1"+wholeFixture), time.Now(), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("client gone")
	n := 0
	_, err = e.q.Events(context.Background(), eq, func(*parse.Record) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("err %v after %d events, want the emit error after 1", err, n)
	}
}

func TestEventsBeforeAnyIngestIsEmpty(t *testing.T) {
	e := newEnv(t) // no table exists yet
	if got, _ := e.events("vault=vault1"); len(got) != 0 {
		t.Fatalf("%v", got)
	}
}
