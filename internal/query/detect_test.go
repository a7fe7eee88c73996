package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var detectDay = at("2026-11-20T00:00:00Z")

// triggering builds a fixture with one or more findings of every kind, and
// near misses of each that must not be reported.
func triggering() []ev {
	var evs []ev
	tm := func(h, m, s int) time.Time {
		return detectDay.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second)
	}
	// Mass retrieval: mallory reads 20 secrets in dv1 and 10 keys in dv2 on
	// one day: 30 > 25.
	for i := 0; i < 30; i++ {
		e := ev{t: tm(9, i, 0), oid: "mallory-oid", upn: "mallory@contoso.com", ip: fmt.Sprintf("198.51.100.%d", i%3),
			object: fmt.Sprintf("s%d", i%5), client: []string{"curl/8", "python-requests"}[i%2]}
		if i >= 20 {
			e.vault, e.op = "dv2", "KeyGet"
		} else {
			e.vault = "dv1"
		}
		evs = append(evs, e)
	}
	// Near misses: exactly 25 successful gets, plus refused gets and lists,
	// which make the caller a candidate but are not successful gets…
	for i := 0; i < 25; i++ {
		evs = append(evs, ev{t: tm(10, i, 0), vault: "dv1", oid: "steady-oid", ip: "192.0.2.10", object: "app-config"})
	}
	for i := 0; i < 10; i++ {
		evs = append(evs, ev{t: tm(10, 30+i, 0), vault: "dv1", oid: "steady-oid", ip: "192.0.2.10", status: 404, object: "gone"})
		evs = append(evs, ev{t: tm(10, 30+i, 30), vault: "dv1", oid: "steady-oid", ip: "192.0.2.10", op: "SecretList"})
	}
	// …and 30 gets over two days.
	for i := 0; i < 30; i++ {
		evs = append(evs, ev{t: tm(23, 30, i*100), vault: "dv1", appid: "nightly-app", ip: "192.0.2.20", object: "cfg"})
	}
	// Sensitive operations: successful ones, and a refused purge.
	evs = append(evs,
		ev{t: tm(11, 0, 0), vault: "dv1", op: "SecretDelete", oid: "alice-oid", ip: "192.0.2.30", object: "old-secret"},
		ev{t: tm(11, 0, 5), vault: "dv1", op: "SecretBackup", oid: "alice-oid", ip: "192.0.2.30", object: "db-password"},
		ev{t: tm(11, 0, 9), vault: "dv2", op: "VaultDelete", oid: "alice-oid", ip: "192.0.2.30"},
		ev{t: tm(11, 1, 0), vault: "dv1", op: "KeyPurge", status: 403, oid: "alice-oid", ip: "192.0.2.30", object: "k1"},
		ev{t: tm(11, 2, 0), vault: "dv1", op: "SecretDelete", status: 404, oid: "alice-oid", ip: "192.0.2.30", object: "missing"},
	)
	// Refused access: eve is forbidden three times and unauthorized once;
	// the 401 challenge of Authentication is everyone's first answer.
	for i := 0; i < 3; i++ {
		evs = append(evs, ev{t: tm(12, i, 0), vault: "dv2", status: 403, upn: "eve@example.net", ip: "203.0.113.9", object: "crown-jewels"})
	}
	evs = append(evs, ev{t: tm(12, 5, 0), vault: "dv2", status: 401, sig: "Unauthorized", upn: "eve@example.net", ip: "203.0.113.9"})
	for i := 0; i < 5; i++ {
		evs = append(evs, ev{t: tm(13, i, 0), vault: "dv1", op: "Authentication", status: 401, ip: "192.0.2.40"})
	}
	// Old TLS: TLS1_0 and TLS1_1, next to TLS1_2 and TLS1_3.
	evs = append(evs,
		ev{t: tm(14, 0, 0), vault: "dv1", appid: "legacy-app", ip: "192.0.2.50", tls: "TLS1_0", client: "old-java"},
		ev{t: tm(14, 0, 1), vault: "dv1", appid: "legacy-app", ip: "192.0.2.50", tls: "TLS1_1", client: "old-java"},
		ev{t: tm(14, 0, 2), vault: "dv1", appid: "modern-app", ip: "192.0.2.51", tls: "TLS1_2"},
		ev{t: tm(14, 0, 3), vault: "dv1", appid: "modern-app", ip: "192.0.2.51", tls: "TLS1_3"},
	)
	// Slow requests: above 1000 ms only.
	evs = append(evs,
		ev{t: tm(15, 0, 0), vault: "dv2", op: "KeySign", appid: "signer", dur: 1500},
		ev{t: tm(15, 0, 1), vault: "dv2", op: "KeySign", appid: "signer", dur: 2500},
		ev{t: tm(15, 0, 2), vault: "dv2", op: "KeySign", appid: "signer", dur: 1000},
		ev{t: tm(15, 0, 3), vault: "dv2", op: "KeySign", appid: "signer", dur: 999.5},
	)
	return evs
}

// benign is a day of traffic in which no detection must fire.
func benign() []ev {
	var evs []ev
	for i := 0; i < 25; i++ {
		evs = append(evs, ev{t: detectDay.Add(time.Duration(i) * time.Minute), vault: "bv", oid: "steady-oid", ip: "192.0.2.10", object: "cfg", tls: "TLS1_2", dur: 1000})
	}
	for i := 0; i < 5; i++ {
		evs = append(evs,
			ev{t: detectDay.Add(time.Hour + time.Duration(i)*time.Minute), vault: "bv", op: "Authentication", status: 401, ip: "192.0.2.40", tls: "TLS1_3"},
			ev{t: detectDay.Add(2*time.Hour + time.Duration(i)*time.Minute), vault: "bv", op: "SecretDelete", status: 404, oid: "alice-oid", object: "missing", tls: "TLS1_3"},
		)
	}
	return evs
}

func (e *env) detections(query string) *Detections {
	e.t.Helper()
	dq, err := ParseDetections(mustValues(e.t, query), time.Now(), Limits{})
	if err != nil {
		e.t.Fatalf("ParseDetections(%q): %v", query, err)
	}
	d, err := e.q.Detections(context.Background(), dq)
	if err != nil {
		e.t.Fatalf("Detections(%q): %v", query, err)
	}
	return d
}

func findingsOf(d *Detections, kind string) []Finding {
	var out []Finding
	for _, f := range d.Findings {
		if f.Kind == kind {
			out = append(out, f)
		}
	}
	return out
}

func keysOf(gs []Group) string {
	var ks []string
	for _, g := range gs {
		ks = append(ks, fmt.Sprintf("%s=%d", g.Key, g.Count))
	}
	return strings.Join(ks, ",")
}

func TestDetectionsFound(t *testing.T) {
	e := newEnv(t)
	e.load(0, triggering())
	d := e.detections("from=2026-11-20T00:00:00Z&to=2026-11-21T00:00:00Z")
	if strings.Join(d.Vaults, ",") != "dv1,dv2" {
		t.Fatalf("vaults %v, want dv1,dv2 found without a vault parameter", d.Vaults)
	}
	for _, kind := range Kinds {
		if d.Summary[kind] != len(findingsOf(d, kind)) {
			t.Errorf("summary %s = %d, findings %d", kind, d.Summary[kind], len(findingsOf(d, kind)))
		}
	}

	t.Run(KindMassRetrieval, func(t *testing.T) {
		fs := findingsOf(d, KindMassRetrieval)
		if len(fs) != 1 {
			t.Fatalf("%+v, want mallory alone (steady has 25, nightly-app spreads 30 over two days)", fs)
		}
		f := fs[0]
		if f.Caller != "mallory-oid" || f.Day != "2026-11-20" || f.Count != 30 ||
			keysOf(f.Vaults) != "dv1=20,dv2=10" || len(f.Objects) != 5 || len(f.IPs) != 3 ||
			keysOf(f.ClientInfos) != "curl/8=15,python-requests=15" {
			t.Fatalf("%+v", f)
		}
		if f.First != "2026-11-20T09:00:00.0000000Z" || f.Last != "2026-11-20T09:29:00.0000000Z" {
			t.Fatalf("first %s last %s", f.First, f.Last)
		}
	})
	t.Run(KindSensitiveOperation, func(t *testing.T) {
		var got []string
		for _, f := range findingsOf(d, KindSensitiveOperation) {
			got = append(got, f.Vault+"/"+f.Operation+"/"+f.Object+"/"+f.Caller)
		}
		w := "dv1/SecretBackup/db-password/alice-oid dv1/SecretDelete/old-secret/alice-oid dv2/VaultDelete//alice-oid"
		if sortJoin(got) != w {
			t.Fatalf("%v\nwant %s (the refused purge and the 404 delete are not successful)", got, w)
		}
	})
	t.Run(KindRefusedAccess, func(t *testing.T) {
		fs := findingsOf(d, KindRefusedAccess)
		var got []string
		for _, f := range fs {
			got = append(got, fmt.Sprintf("%s@%s=%d[%s]", f.Caller, f.IP, f.Count, keysOf(f.Statuses)))
		}
		// alice's refused purge is refused access too; the Authentication
		// 401s are not.
		w := "alice-oid@192.0.2.30=1[403=1] eve@example.net@203.0.113.9=4[403=3,401=1]"
		if sortJoin(got) != w {
			t.Fatalf("%v\nwant %s", got, w)
		}
	})
	t.Run(KindOldTLS, func(t *testing.T) {
		var got []string
		for _, f := range findingsOf(d, KindOldTLS) {
			got = append(got, fmt.Sprintf("%s/%s/%s=%d[%s]", f.Vault, f.TLSVersion, f.Caller, f.Count, keysOf(f.ClientInfos)))
		}
		if w := "dv1/TLS1_0/legacy-app=1[old-java=1] dv1/TLS1_1/legacy-app=1[old-java=1]"; sortJoin(got) != w {
			t.Fatalf("%v\nwant %s", got, w)
		}
	})
	t.Run(KindSlowRequests, func(t *testing.T) {
		fs := findingsOf(d, KindSlowRequests)
		if len(fs) != 1 || fs[0].Operation != "KeySign" || fs[0].Vault != "dv2" || fs[0].Count != 2 ||
			fs[0].MaxDurationMs != 2500 || fs[0].AvgDurationMs != 2000 {
			t.Fatalf("%+v, want KeySign in dv2: 2 requests above 1000 ms", fs)
		}
	})

	t.Run("parameters", func(t *testing.T) {
		e.t = t
		// One vault: mallory's 20 in dv1 are under 25; dv2's findings only.
		d := e.detections("vault=dv1&from=2026-11-20T00:00:00Z&to=2026-11-21T00:00:00Z&threshold=19&slowMs=5000")
		fs := findingsOf(d, KindMassRetrieval)
		if len(fs) != 2 || fs[0].Caller != "steady-oid" || fs[0].Count != 25 || fs[1].Caller != "mallory-oid" || fs[1].Count != 20 {
			t.Fatalf("threshold 19 in dv1: %+v", fs)
		}
		if n := len(findingsOf(d, KindSlowRequests)); n != 0 {
			t.Fatalf("slowMs 5000: %d slow findings", n)
		}
		for _, f := range d.Findings {
			for _, v := range append(f.Vaults, Group{Key: f.Vault}) {
				if v.Key == "dv2" {
					t.Fatalf("vault=dv1 reported %+v", f)
				}
			}
		}
		// A window that ends before the afternoon: no TLS or slow findings.
		d = e.detections("from=2026-11-20T00:00:00Z&to=2026-11-20T13:00:00Z")
		if len(findingsOf(d, KindOldTLS))+len(findingsOf(d, KindSlowRequests)) != 0 || len(findingsOf(d, KindMassRetrieval)) != 1 {
			t.Fatalf("morning: %+v", d.Summary)
		}
	})
}

// A kinds selector computes those kinds alone, each as the full answer
// has it; event windows keep the event-scanned kinds to their hours; Skip
// leaves a mass-retrieval candidate out before its postings are read.
func TestDetectionsSelected(t *testing.T) {
	e := newEnv(t)
	e.load(0, triggering())
	day := Window{From: detectDay, To: detectDay.Add(24 * time.Hour)}
	run := func(dq DetectionsQuery) *Detections {
		t.Helper()
		dq.Window, dq.Threshold, dq.SlowMs = day, DefaultThreshold, DefaultSlowMs
		d, err := e.q.Detections(context.Background(), &dq)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	all := run(DetectionsQuery{})
	for _, kind := range Kinds {
		one := run(DetectionsQuery{Kinds: []string{kind}})
		want, _ := json.Marshal(append([]Finding{}, findingsOf(all, kind)...))
		got, _ := json.Marshal(one.Findings)
		if string(got) != string(want) || len(one.Summary) != 1 || one.Summary[kind] != all.Summary[kind] {
			t.Errorf("%s alone: %s, summary %v\nwant %s", kind, got, one.Summary, want)
		}
		if strings.Join(one.Vaults, ",") != "dv1,dv2" {
			t.Errorf("%s alone: vaults %v", kind, one.Vaults)
		}
	}

	// The hour of the old-TLS requests only: the slow ones (15:00) and
	// the sensitive operations (11:00) are outside it.
	d := run(DetectionsQuery{EventWindows: []Window{{From: detectDay.Add(14 * time.Hour), To: detectDay.Add(15 * time.Hour)}}})
	if d.Summary[KindOldTLS] != 2 || d.Summary[KindSlowRequests]+d.Summary[KindSensitiveOperation]+d.Summary[KindRefusedAccess] != 0 {
		t.Fatalf("14:00 to 15:00: %v", d.Summary)
	}
	if d.Summary[KindMassRetrieval] != 1 {
		t.Fatalf("mass retrieval reads the whole window whatever the event windows: %v", d.Summary)
	}
	// Two hours, one past the window's end (cut to it).
	d = run(DetectionsQuery{Kinds: []string{KindSensitiveOperation, KindRefusedAccess}, EventWindows: []Window{
		{From: detectDay.Add(11 * time.Hour), To: detectDay.Add(12 * time.Hour)},
		{From: detectDay.Add(23 * time.Hour), To: detectDay.Add(30 * time.Hour)},
	}})
	if d.Summary[KindSensitiveOperation] != 3 || d.Summary[KindRefusedAccess] != 1 || len(d.Summary) != 2 {
		t.Fatalf("11:00 and 23:00: %v (alice's refused purge at 11:01 is the one refused access)", d.Summary)
	}
	// No event window: no event-scanned finding.
	d = run(DetectionsQuery{EventWindows: []Window{}})
	if d.Summary[KindSensitiveOperation]+d.Summary[KindRefusedAccess]+d.Summary[KindOldTLS]+d.Summary[KindSlowRequests] != 0 || d.Summary[KindMassRetrieval] != 1 {
		t.Fatalf("no event window: %v", d.Summary)
	}

	var asked []string
	d = run(DetectionsQuery{Kinds: []string{KindMassRetrieval}, Skip: func(f *Finding) bool {
		asked = append(asked, f.Kind+"/"+f.Caller+"/"+f.Day)
		return f.Caller == "mallory-oid"
	}})
	if len(d.Findings) != 0 {
		t.Fatalf("mallory skipped: %+v", d.Findings)
	}
	// steady-oid's lists make it a candidate too (the counts bound gets
	// by every successful request), and its postings are read.
	if got := sortJoin(asked); got != "massSecretRetrieval/mallory-oid/2026-11-20 massSecretRetrieval/steady-oid/2026-11-20" {
		t.Fatalf("Skip asked about %s", got)
	}

	_, err := e.q.Detections(context.Background(), &DetectionsQuery{Window: day, Threshold: 25, SlowMs: 1000, Kinds: []string{"massSecretRetrieval", "bogus"}})
	var pe *ParamError
	if !errors.As(err, &pe) || !strings.Contains(pe.Msg, `"bogus"`) {
		t.Fatalf("unknown kind: %v", err)
	}
}

func TestDetectionsAbsentFromBenignTraffic(t *testing.T) {
	e := newEnv(t)
	e.load(0, benign())
	d := e.detections("from=2026-11-20T00:00:00Z&to=2026-11-21T00:00:00Z")
	if len(d.Findings) != 0 {
		t.Fatalf("benign traffic: %+v", d.Findings)
	}
	for _, kind := range Kinds {
		if n, ok := d.Summary[kind]; !ok || n != 0 {
			t.Fatalf("summary %v lacks a zero for %s", d.Summary, kind)
		}
	}
	if strings.Join(d.Vaults, ",") != "bv" {
		t.Fatalf("vaults %v", d.Vaults)
	}
}

func TestTLSBelow12(t *testing.T) {
	for v, want := range map[string]bool{
		"TLS1_0": true, "TLS1_1": true, "tls1.1": true, "SSL3": true, "TLSv1": true,
		"TLS1_2": false, "TLS1_3": false, "": false, "unknown": false, "TLS2_0": false,
	} {
		if got := tlsBelow12(v); got != want {
			t.Errorf("tlsBelow12(%q) = %v", v, got)
		}
	}
}

func sortJoin(s []string) string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return strings.Join(out, " ")
}
