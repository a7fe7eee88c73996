package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/query"
)

func webhook(t *testing.T, r *receiver) *Webhook {
	t.Helper()
	w, err := NewWebhook(r.URL+"/hook?token=s3cr3t", testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// byID counts the deliveries per webhook-id, and checks each.
func byID(t *testing.T, ds []delivery) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, d := range ds {
		if err := verifyStandardWebhook(testSecret, d.header, d.body, time.Now()); err != nil {
			t.Fatalf("signature: %v", err)
		}
		if ct := d.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/cloudevents+json") {
			t.Fatalf("Content-Type %q", ct)
		}
		ev := checkCloudEvent(t, d.body)
		if ev["id"] != d.header.Get("webhook-id") {
			t.Fatalf("CloudEvents id %v, webhook-id %s", ev["id"], d.header.Get("webhook-id"))
		}
		out[d.header.Get("webhook-id")]++
	}
	return out
}

func kindsOf(t *testing.T, ds []delivery) []string {
	var out []string
	for _, d := range ds {
		var ev CloudEvent
		if err := json.Unmarshal(d.body, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.TrimPrefix(ev.Type, EventTypePrefix))
	}
	sort.Strings(out)
	return out
}

var day = VaultDay{Vault: "av1", Day: testDay}

// Each kind fires once, whatever evaluates the day again: a re-read blob,
// an invocation retried after it claimed but before it recorded the
// evaluation, four engines racing on a fresh day.
func TestExactlyOnce(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, nil)
	names := e.load(0, massAndDelete("av1")...)
	eng := e.engine("", webhook(t, r))
	ctx := context.Background()

	rep := eng.Evaluate(ctx, []VaultDay{day})
	if rep.Alerts != 2 || rep.Delivered != 2 || len(rep.Errors) > 0 {
		t.Fatalf("first evaluation: %+v", rep)
	}
	if got := strings.Join(kindsOf(t, r.deliveries()), ","); got != "massSecretRetrieval,sensitiveOperation" {
		t.Fatalf("kinds %s", got)
	}

	// The blob read again: nothing indexed, nothing new.
	for _, name := range names {
		e.ix.Ingest(name)
	}
	if rep := eng.Evaluate(ctx, []VaultDay{day}); rep.Unchanged != 1 || rep.Alerts != 0 {
		t.Fatalf("after a re-read: %+v", rep)
	}
	// A retried invocation: the evaluation is done again from scratch
	// (its record lost), by another process.
	if err := eng.Store.SetEvaluated(ctx, "av1", testDay, Evaluation{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	other := e.engine("", webhook(t, r))
	if rep := other.Evaluate(ctx, []VaultDay{day}); rep.Evaluated != 1 || rep.Alerts != 0 {
		t.Fatalf("evaluated again: %+v", rep)
	}
	// More of the same day: the mass retrieval grows, still one alert.
	e.load(100, massAndDelete("av1")[:10]...)
	if rep := eng.Evaluate(ctx, []VaultDay{day}); rep.Evaluated != 1 || rep.Alerts != 0 {
		t.Fatalf("after more gets: %+v", rep)
	}

	// Four engines (four instances) on a new vault-day at once.
	e.load(200, massAndDelete("av2")...)
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := Report{}
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep := e.engine("", webhook(t, r)).Evaluate(ctx, []VaultDay{{Vault: "av2", Day: testDay}})
			mu.Lock()
			total.add(rep)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if total.Alerts != 2 || len(total.Errors) > 0 {
		t.Fatalf("four racing: %+v", total)
	}
	ids := byID(t, r.deliveries())
	if len(ids) != 4 {
		t.Fatalf("%d distinct alerts delivered, want 4: %v", len(ids), ids)
	}
	for id, n := range ids {
		if n != 1 {
			t.Fatalf("alert %s delivered %d times", id, n)
		}
	}
	rs, _, err := eng.Store.List(ctx, ListOptions{From: testDay, To: testDay})
	if err != nil || len(rs) != 4 {
		t.Fatalf("listed %d, %v", len(rs), err)
	}
	for _, rr := range rs {
		if rr.State != StateDelivered || rr.SinkStates()["webhook"].Attempts != 1 {
			t.Fatalf("%+v", rr)
		}
	}
}

// A receiver that answers 500 three times, then 200, gets the alert once
// delivered, with the same webhook-id on every attempt.
func TestRetriedUntilDelivered(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, func(n int, _ delivery) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	e.load(0, massAndDelete("av1")[:30]...)
	eng := e.engine("", webhook(t, r))
	rep := eng.Evaluate(context.Background(), []VaultDay{day})
	if rep.Alerts != 1 || rep.Delivered != 1 {
		t.Fatalf("%+v", rep)
	}
	ds := r.deliveries()
	if len(ds) != 4 {
		t.Fatalf("%d attempts, want 4", len(ds))
	}
	ids := byID(t, ds)
	if len(ids) != 1 {
		t.Fatalf("webhook-ids %v: want one, the same on every attempt", ids)
	}
	rs, _, _ := eng.Store.List(context.Background(), ListOptions{From: testDay, To: testDay})
	if len(rs) != 1 || rs[0].State != StateDelivered || rs[0].SinkStates()["webhook"].Attempts != 4 {
		t.Fatalf("%+v", rs)
	}
}

// A receiver that never answers: after the attempts, undelivered, with
// the reason, in the state table (what status and the page list).
func TestNeverAnswersEndsUndelivered(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, func(int, delivery) int { return -1 })
	e.load(0, massAndDelete("av1")[:30]...)
	eng := e.engine(`{"delivery":{"attempts":2,"timeoutSeconds":1}}`, webhook(t, r))
	rep := eng.Evaluate(context.Background(), []VaultDay{day})
	if rep.Alerts != 1 || rep.Undelivered != 1 {
		t.Fatalf("%+v", rep)
	}
	rs, _, err := eng.Store.List(context.Background(), ListOptions{From: testDay, To: testDay, States: []string{StateUndelivered}})
	if err != nil || len(rs) != 1 {
		t.Fatalf("%v %v", rs, err)
	}
	st := rs[0].SinkStates()["webhook"]
	if st.State != sinkUndelivered || st.Attempts != 2 || st.Error != "no answer in time" {
		t.Fatalf("%+v", st)
	}
	if strings.Contains(rs[0].Sinks, "s3cr3t") || strings.Contains(rs[0].Sinks, "/hook") {
		t.Fatalf("the URL leaked into state: %s", rs[0].Sinks)
	}
	// Nothing more is attempted.
	if rep := eng.Retry(context.Background()); rep.Delivered+rep.Retrying+rep.Undelivered != 0 {
		t.Fatalf("retry after undelivered: %+v", rep)
	}
}

// Attempts past the invocation's are made by later ticks, when due.
func TestRetryOnLaterTick(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, func(n int, _ delivery) int {
		if n <= 5 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	e.load(0, massAndDelete("av1")[:30]...)
	eng := e.engine("", webhook(t, r))
	now := time.Now()
	eng.Now = func() time.Time { return now }
	if rep := eng.Evaluate(context.Background(), []VaultDay{day}); rep.Retrying != 1 {
		t.Fatalf("%+v", rep)
	}
	if rep := eng.Retry(context.Background()); rep.Delivered+rep.Retrying != 0 {
		t.Fatalf("retried before it was due: %+v", rep)
	}
	now = now.Add(2 * time.Minute)
	if rep := eng.Retry(context.Background()); rep.Retrying != 1 {
		t.Fatalf("fifth attempt: %+v", rep)
	}
	now = now.Add(2 * time.Minute)
	if rep := eng.Retry(context.Background()); rep.Delivered != 1 {
		t.Fatalf("sixth attempt: %+v", rep)
	}
	if ids := byID(t, r.deliveries()); len(ids) != 1 {
		t.Fatalf("%v", ids)
	}
}

// A claim whose invocation died is taken over once its lease is past,
// and delivered with the same id.
func TestStaleClaimTakenOver(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, nil)
	e.load(0, massAndDelete("av1")[:30]...)
	dead := e.engine("", webhook(t, r))
	d := testDay.Format(time.DateOnly)
	f := query.Finding{Kind: query.KindMassRetrieval, Caller: "mallory-oid", Day: d, Count: 30, First: d + "T09:00:00Z", Last: d + "T09:00:29Z"}
	a := newAlert(f, "av1", d, SeverityMedium, "", time.Now())
	if _, won, err := dead.Store.Claim(context.Background(), a, []string{"webhook"}, "dead-owner", time.Now().Add(-10*time.Minute)); !won || err != nil {
		t.Fatal(won, err)
	}
	eng := e.engine("", webhook(t, r))
	if rep := eng.Evaluate(context.Background(), []VaultDay{day}); rep.Alerts != 0 {
		t.Fatalf("claimed again: %+v", rep)
	}
	if rep := eng.Retry(context.Background()); rep.Delivered != 1 {
		t.Fatalf("%+v", rep)
	}
	if ids := byID(t, r.deliveries()); ids[a.ID] != 1 || len(ids) != 1 {
		t.Fatalf("%v, want %s once", ids, a.ID)
	}
}

// Allow-listed callers never alert: Azure Resource Graph's VaultGets by
// default, an app id given in the tuning (its user's gets through it),
// an object id; others still do.
func TestAllowListedCallersNeverAlert(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, nil)
	var rs []rec
	for i := 0; i < 40; i++ {
		at := 10*time.Hour + time.Duration(i)*time.Second
		rs = append(rs,
			rec{at: at, vault: "av1", op: "VaultGet", oid: "arg-sp-oid", appid: AppAzureResourceGraph},
			rec{at: at, vault: "av1", oid: "backup-user", appid: "backup-app", object: "db"},
			rec{at: at, vault: "av1", oid: "ops-oid", object: "cfg"},
			rec{at: at, vault: "av1", oid: "eve-oid", object: "crown"},
		)
	}
	// Resource Graph's SecretGets are not allowed: 30 of them alert.
	for i := 0; i < 30; i++ {
		rs = append(rs, rec{at: 11*time.Hour + time.Duration(i)*time.Second, vault: "av1", oid: "arg2-sp-oid", appid: AppAzureResourceGraph, object: "x"})
	}
	e.load(0, rs...)
	eng := e.engine(`{"allow":["backup-app"],"kinds":{"massSecretRetrieval":{"allow":[{"id":"`+AppAzureResourceGraph+`","operations":["VaultGet"]},"OPS-OID"]}}}`, webhook(t, r))
	rep := eng.Evaluate(context.Background(), []VaultDay{day})
	if rep.Alerts != 2 || rep.Suppressed != 3 {
		t.Fatalf("%+v", rep)
	}
	var callers []string
	for _, d := range r.deliveries() {
		var ev CloudEvent
		_ = json.Unmarshal(d.body, &ev)
		callers = append(callers, ev.Data.Finding.Caller)
	}
	sort.Strings(callers)
	if got := strings.Join(callers, ","); got != "arg2-sp-oid,eve-oid" {
		t.Fatalf("alerted %s", got)
	}
	// The default list alone keeps Resource Graph's VaultGets quiet.
	e2 := newEnv(t)
	var arg []rec
	for i := 0; i < 40; i++ {
		arg = append(arg, rec{at: 10*time.Hour + time.Duration(i)*time.Second, vault: "av1", op: "VaultGet", oid: "arg-sp-oid", appid: AppAzureResourceGraph})
	}
	e2.load(0, arg...)
	if rep := e2.engine("", webhook(t, r)).Evaluate(context.Background(), []VaultDay{day}); rep.Alerts != 0 || rep.Suppressed != 1 {
		t.Fatalf("default allow-list: %+v", rep)
	}
}

// Kinds switched off, thresholds and severities follow the tuning; no
// sink: alerts are recorded, nothing is sent.
func TestTuningApplied(t *testing.T) {
	e := newEnv(t)
	e.load(0, massAndDelete("av1")...)
	eng := e.engine(`{"kinds":{"sensitiveOperation":{"enabled":false},"massSecretRetrieval":{"threshold":29,"severity":"high"}}}`)
	if rep := eng.Evaluate(context.Background(), []VaultDay{day}); rep.Alerts != 1 {
		t.Fatalf("%+v", rep)
	}
	rs, _, _ := eng.Store.List(context.Background(), ListOptions{From: testDay, To: testDay})
	if len(rs) != 1 || rs[0].Kind != query.KindMassRetrieval || rs[0].Severity != SeverityHigh || rs[0].State != StateRecorded {
		t.Fatalf("%+v", rs)
	}
	// A new tuning evaluates the unchanged day again.
	eng2 := e.engine(`{"kinds":{"massSecretRetrieval":{"threshold":30}}}`)
	if rep := eng2.Evaluate(context.Background(), []VaultDay{day}); rep.Evaluated != 1 || rep.Alerts != 1 {
		t.Fatalf("new tuning: %+v (the delete alerts now)", rep)
	}
}

func TestFindingIDStable(t *testing.T) {
	a := FindingID("k", "v", "s", "2026-11-20")
	if a != FindingID("k", "v", "s", "2026-11-20") || a == FindingID("k", "v", "s|", "2026-11-20") || a == FindingID("k", "vs", "", "2026-11-20") {
		t.Fatal("ids")
	}
	if len(a) != 36 || strings.ContainsAny(a, "./\\#?") {
		t.Fatalf("%q", a)
	}
}

// Every kind, switched on, alerts exactly once when four engines race on
// its day, and not again when the day is evaluated afresh.
func TestEveryKindOnce(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, nil)
	var rs []rec
	// Ten days of history: 10 gets a day by the usual app.
	for d := -10; d < 0; d++ {
		for i := 0; i < 10; i++ {
			rs = append(rs, rec{at: time.Duration(d)*24*time.Hour + 12*time.Hour + time.Duration(i)*time.Minute, vault: "av1", oid: "app-oid", object: "cfg"})
		}
	}
	for i := 0; i < 10; i++ {
		rs = append(rs, rec{at: 12*time.Hour + time.Duration(i)*time.Minute, vault: "av1", oid: "app-oid", object: "cfg"})
	}
	// The day: mallory reads 200 secrets at noon (mass retrieval, and an
	// anomaly of the vault and of mallory, by day and by hour), deletes
	// one, is refused once, uses TLS 1.0 once, waits 5 s once.
	for i := 0; i < 200; i++ {
		rs = append(rs, rec{at: 12*time.Hour + time.Duration(i)*time.Second, vault: "av1", oid: "mallory-oid", object: fmt.Sprintf("s%d", i%7)})
	}
	rs = append(rs,
		rec{at: 13 * time.Hour, vault: "av1", op: "SecretDelete", oid: "mallory-oid", object: "s1"},
		rec{at: 13*time.Hour + time.Minute, vault: "av1", status: 403, oid: "mallory-oid", object: "crown"},
		rec{at: 13*time.Hour + 2*time.Minute, vault: "av1", oid: "mallory-oid", object: "s2", tls: "TLS1_0"},
		rec{at: 13*time.Hour + 3*time.Minute, vault: "av1", oid: "mallory-oid", object: "s3", dur: 5000},
	)
	e.load(0, rs...)
	all := `{"kinds":{"refusedAccess":{"enabled":true},"oldTls":{"enabled":true},"slowRequests":{"enabled":true}}}`
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := Report{}
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep := e.engine(all, webhook(t, r)).Evaluate(context.Background(), []VaultDay{day})
			mu.Lock()
			total.add(rep)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(total.Errors) > 0 {
		t.Fatal(total.Errors)
	}
	ids := byID(t, r.deliveries())
	for id, n := range ids {
		if n != 1 {
			t.Fatalf("alert %s delivered %d times", id, n)
		}
	}
	kinds := map[string]int{}
	for _, k := range kindsOf(t, r.deliveries()) {
		kinds[k]++
	}
	for _, k := range query.Kinds {
		if kinds[k] == 0 {
			t.Errorf("no %s alert: %v", k, kinds)
		}
	}
	// vault and mallory, by day and by hour
	if kinds[query.KindAccessAnomaly] != 4 || total.Alerts != len(ids) {
		t.Fatalf("kinds %v, %d claimed, %d delivered", kinds, total.Alerts, len(ids))
	}
	if err := e.engine(all).Store.SetEvaluated(context.Background(), "av1", testDay, Evaluation{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if rep := e.engine(all, webhook(t, r)).Evaluate(context.Background(), []VaultDay{day}); rep.Evaluated != 1 || rep.Alerts != 0 {
		t.Fatalf("evaluated again: %+v", rep)
	}
	if n := len(r.deliveries()); n != len(ids) {
		t.Fatalf("%d deliveries after a second evaluation, want %d", n, len(ids))
	}
}
