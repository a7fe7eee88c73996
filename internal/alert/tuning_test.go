package alert

import (
	"strings"
	"testing"

	"github.com/kvaudit/kvaudit/internal/query"
)

func TestParseTuningDefaults(t *testing.T) {
	tu, err := ParseTuning("")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tu.Enabled(), ","); got != "massSecretRetrieval,sensitiveOperation,accessAnomaly" {
		t.Fatalf("enabled by default: %s", got)
	}
	m := tu.Kind(query.KindMassRetrieval)
	if m.Threshold != 25 || len(m.Allow) != 2 || m.Allow[0].ID != AppAzureResourceGraph || !m.Allow[0].covers("VaultGet") || m.Allow[0].covers("SecretGet") {
		t.Fatalf("%+v", m)
	}
	if tu.Delivery.Attempts != 8 || tu.Timeout().Seconds() != 15 {
		t.Fatalf("%+v", tu.Delivery)
	}
	same, _ := ParseTuning(`{}`)
	if same.Hash() != tu.Hash() {
		t.Fatal("{} is not the defaults")
	}
}

func TestParseTuning(t *testing.T) {
	cases := []struct {
		raw  string
		err  string // substring of the error; "" for none
		test func(*Tuning) bool
	}{
		{`{"kinds":{"refusedAccess":{"enabled":true,"threshold":10}}}`, "", func(tu *Tuning) bool {
			k := tu.Kind(query.KindRefusedAccess)
			return k.Enabled && k.Threshold == 10 && k.Severity == SeverityLow
		}},
		{`{"kinds":{"massSecretRetrieval":{"allow":[]}}}`, "", func(tu *Tuning) bool { return len(tu.Kind(query.KindMassRetrieval).Allow) == 0 }},
		{`{"allow":["a",{"id":"b","operations":["SecretGet"]}]}`, "", func(tu *Tuning) bool {
			return len(tu.Kind(query.KindOldTLS).Allow) == 2 && len(tu.Kind(query.KindMassRetrieval).Allow) == 4
		}},
		{`{"kinds":{"accessAnomaly":{"score":4,"minBaseline":20}}}`, "", func(tu *Tuning) bool {
			a := tu.Kind(query.KindAccessAnomaly).Anomaly
			return a.Score == 4 && a.MinBaseline == 20 && a.Ratio == 2
		}},
		{`{"kinds":{"massRetrieval":{}}}`, "kinds.massRetrieval: unknown kind", nil},
		{`{"kinds":{"oldTls":{"enable":true}}}`, "unknown field", nil},
		{`{"kinds":{"oldTls":{"severity":"urgent"}}}`, "kinds.oldTls.severity", nil},
		{`{"kinds":{"massSecretRetrieval":{"threshold":0}}}`, "kinds.massSecretRetrieval.threshold=0", nil},
		{`{"kinds":{"oldTls":{"score":3}}}`, "kinds.oldTls.score: only accessAnomaly", nil},
		{`{"kinds":{"slowRequests":{"slowMs":-1}}}`, "kinds.slowRequests.slowMs", nil},
		{`{"allow":[""]}`, "allow[0].id", nil},
		{`{"allow":[{"id":"x","operations":["Secret Get"]}]}`, "allow[0].operations", nil},
		{`{"delivery":{"attempts":0}}`, "", func(tu *Tuning) bool { return tu.Delivery.Attempts == 8 }},
		{`{"delivery":{"attempts":50}}`, "delivery.attempts=50", nil},
		{`{"delivery":{"timeoutSeconds":500}}`, "delivery.timeoutSeconds=500", nil},
		{`[1]`, "not valid JSON", nil},
		{`{} {}`, "more than one value", nil},
	}
	for _, c := range cases {
		tu, err := ParseTuning(c.raw)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want %q", c.raw, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.raw, err)
		case c.test != nil && err == nil && !c.test(tu):
			t.Errorf("%s: %+v", c.raw, tu.Kinds)
		}
	}
}

// FuzzParseTuning: any setting value is a Tuning or an error naming what
// is wrong, never a panic; an accepted one is stable (same hash again).
func FuzzParseTuning(f *testing.F) {
	for _, s := range []string{"", "{}", `{"kinds":{"oldTls":{"enabled":true}}}`, `{"allow":["a",{"id":"b","operations":["SecretGet"]}]}`,
		`{"delivery":{"attempts":3}}`, `{"kinds":{"accessAnomaly":{"score":4}}}`, `[`, `{"kinds":{"x":null}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		tu, err := ParseTuning(raw)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		again, err := ParseTuning(raw)
		if err != nil || again.Hash() != tu.Hash() {
			t.Fatalf("not stable: %v", err)
		}
		for _, k := range query.Kinds {
			_ = tu.Kind(k)
		}
	})
}
