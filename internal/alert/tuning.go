package alert

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kvaudit/kvaudit/internal/query"
)

// Severities, as Sentinel and Defender name them.
const (
	SeverityInformational = "informational"
	SeverityLow           = "low"
	SeverityMedium        = "medium"
	SeverityHigh          = "high"
)

var severities = []string{SeverityInformational, SeverityLow, SeverityMedium, SeverityHigh}

// Application ids that Microsoft Sentinel's "Mass secret retrieval from
// Azure Key Vault" rule allows for VaultGet (Azure/Azure-Sentinel,
// Solutions/Azure Key Vault/Analytic Rules/KeyvaultMassSecretRetrieval.yaml):
// Azure Resource Graph indexing every tracked resource, and the Policy
// Insights data plane checking policies.
const (
	AppAzureResourceGraph = "509e4652-da8d-478d-a730-e9d4a1996ca4"
	AppPolicyInsights     = "8cae6e77-e04e-42ce-b5cb-50d82bce26b1"
)

// Allow is one allow-list entry: a caller's object id, app id or UPN,
// case-insensitive, for some operations (none: every operation).
type Allow struct {
	ID         string   `json:"id"`
	Operations []string `json:"operations,omitempty"`
}

// UnmarshalJSON takes "id" as well as {"id":…,"operations":[…]}.
func (a *Allow) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*a = Allow{ID: s}
		return nil
	}
	type plain Allow
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return err
	}
	*a = Allow(p)
	return nil
}

// covers reports whether the entry covers operation op.
func (a Allow) covers(op string) bool {
	return len(a.Operations) == 0 || slices.ContainsFunc(a.Operations, func(o string) bool { return strings.EqualFold(o, op) })
}

// KindTuning tunes one detection kind. Pointer fields distinguish "not
// given" (the default stays) from a given zero.
type KindTuning struct {
	Enabled  *bool  `json:"enabled,omitempty"`
	Severity string `json:"severity,omitempty"`
	// Threshold: a finding alerts when its count is above it (mass
	// retrieval: successful gets a day, default 25; others 0).
	Threshold *int64 `json:"threshold,omitempty"`
	// Allow replaces the kind's default allow-list.
	Allow []Allow `json:"allow,omitempty"`
	// SlowMs (slowRequests): durationMs above this.
	SlowMs *float64 `json:"slowMs,omitempty"`
	// Score, MinBaseline, Ratio (accessAnomaly): see query.AnomalyParams.
	Score       *float64 `json:"score,omitempty"`
	MinBaseline *float64 `json:"minBaseline,omitempty"`
	Ratio       *float64 `json:"ratio,omitempty"`
}

// Delivery tunes retries.
type Delivery struct {
	// Attempts per sink before an alert is undelivered (default 8): the
	// first three in the invocation that found it (at once, then 1 s and
	// 4 s later), the rest from later CatchUp ticks, 1, 5, 30 minutes, 2
	// and 5 hours after the previous (the Standard Webhooks schedule's
	// shape, shortened so that a failure shows within a working day).
	Attempts int `json:"attempts,omitempty"`
	// TimeoutSeconds bounds one attempt (default 15: the Standard
	// Webhooks recommendation is 15 to 30 s).
	TimeoutSeconds int `json:"timeoutSeconds,omitempty"`
}

// Tuning is the AlertTuning setting: which kinds alert, how, and who is
// allowed. Build it with ParseTuning.
type Tuning struct {
	Kinds    map[string]*KindTuning `json:"kinds,omitempty"`
	Allow    []Allow                `json:"allow,omitempty"`
	Delivery Delivery               `json:"delivery,omitzero"`

	hash string
}

// Kind is the effective tuning of one kind.
type Kind struct {
	Name      string
	Enabled   bool
	Severity  string
	Threshold int64
	Allow     []Allow // the kind's list and the global one
	SlowMs    float64
	Anomaly   query.AnomalyParams
}

func ptr[T any](v T) *T { return &v }

// defaultKinds: Sentinel's three rules on (mass retrieval, sensitive
// operations, the access anomaly), the hygiene kinds off (they are in the
// web page and the API; switch them on to be told).
func defaultKinds() map[string]*KindTuning {
	return map[string]*KindTuning{
		query.KindMassRetrieval: {Enabled: ptr(true), Severity: SeverityMedium, Threshold: ptr(int64(query.DefaultThreshold)),
			Allow: []Allow{
				{ID: AppAzureResourceGraph, Operations: []string{"VaultGet"}},
				{ID: AppPolicyInsights, Operations: []string{"VaultGet"}},
			}},
		query.KindSensitiveOperation: {Enabled: ptr(true), Severity: SeverityHigh, Threshold: ptr(int64(0))},
		query.KindAccessAnomaly: {Enabled: ptr(true), Severity: SeverityMedium, Threshold: ptr(int64(0)),
			Score: ptr(float64(query.DefaultAnomalyScore)), MinBaseline: ptr(float64(query.DefaultAnomalyMinBaseline)), Ratio: ptr(float64(query.DefaultAnomalyRatio))},
		query.KindRefusedAccess: {Enabled: ptr(false), Severity: SeverityLow, Threshold: ptr(int64(0))},
		query.KindOldTLS:        {Enabled: ptr(false), Severity: SeverityLow, Threshold: ptr(int64(0))},
		query.KindSlowRequests:  {Enabled: ptr(false), Severity: SeverityLow, Threshold: ptr(int64(0)), SlowMs: ptr(float64(query.DefaultSlowMs))},
	}
}

// Bounds of the setting.
const (
	maxAllowEntries = 1000
	maxIDLen        = 256
)

// ParseTuning reads the AlertTuning setting ("" for the defaults) over
// the defaults: a kind given keeps the defaults of the fields it leaves
// out, except allow, which replaces the kind's list. The error names the
// field at fault; unknown fields and kinds are errors, so a typo never
// turns a detection off silently.
func ParseTuning(raw string) (*Tuning, error) {
	t := &Tuning{Kinds: defaultKinds()}
	if strings.TrimSpace(raw) != "" {
		var given Tuning
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&given); err != nil {
			return nil, fmt.Errorf("not valid JSON of the documented shape: %w", err)
		}
		if dec.More() {
			return nil, errors.New("not valid JSON: more than one value")
		}
		for name, k := range given.Kinds {
			def, ok := t.Kinds[name]
			if !ok {
				return nil, fmt.Errorf("kinds.%s: unknown kind; kinds are %s", name, strings.Join(query.Kinds, ", "))
			}
			if k == nil {
				continue
			}
			if k.Enabled != nil {
				def.Enabled = k.Enabled
			}
			if k.Severity != "" {
				def.Severity = k.Severity
			}
			if k.Threshold != nil {
				def.Threshold = k.Threshold
			}
			if k.Allow != nil {
				def.Allow = k.Allow
			}
			for _, f := range []struct{ dst, src **float64 }{{&def.SlowMs, &k.SlowMs}, {&def.Score, &k.Score}, {&def.MinBaseline, &k.MinBaseline}, {&def.Ratio, &k.Ratio}} {
				if *f.src != nil {
					*f.dst = *f.src
				}
			}
		}
		t.Allow = given.Allow
		t.Delivery = given.Delivery
	}
	if t.Delivery.Attempts == 0 {
		t.Delivery.Attempts = 8
	}
	if t.Delivery.TimeoutSeconds == 0 {
		t.Delivery.TimeoutSeconds = 15
	}
	if err := t.validate(); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(t) // maps marshal sorted: a stable fingerprint
	sum := sha256.Sum256(b)
	t.hash = hex.EncodeToString(sum[:8])
	return t, nil
}

func (t *Tuning) validate() error {
	if t.Delivery.Attempts < 1 || t.Delivery.Attempts > 20 {
		return fmt.Errorf("delivery.attempts=%d: want 1 to 20", t.Delivery.Attempts)
	}
	if t.Delivery.TimeoutSeconds < 1 || t.Delivery.TimeoutSeconds > 120 {
		return fmt.Errorf("delivery.timeoutSeconds=%d: want 1 to 120", t.Delivery.TimeoutSeconds)
	}
	n := len(t.Allow)
	if err := checkAllow("allow", t.Allow); err != nil {
		return err
	}
	for _, name := range query.Kinds {
		k := t.Kinds[name]
		at := "kinds." + name
		if !slices.Contains(severities, k.Severity) {
			return fmt.Errorf("%s.severity=%q: want one of %s", at, k.Severity, strings.Join(severities, ", "))
		}
		lo := int64(0)
		if name == query.KindMassRetrieval {
			lo = 1 // the API's bound: more than 0 gets is every get
		}
		if *k.Threshold < lo || *k.Threshold > 1_000_000 {
			return fmt.Errorf("%s.threshold=%d: want %d to 1000000", at, *k.Threshold, lo)
		}
		if k.SlowMs != nil && !(*k.SlowMs > 0 && *k.SlowMs <= 86_400_000) {
			return fmt.Errorf("%s.slowMs=%g: want above 0 and at most 86400000", at, *k.SlowMs)
		}
		if k.SlowMs != nil && name != query.KindSlowRequests {
			return fmt.Errorf("%s.slowMs: only slowRequests takes it", at)
		}
		for _, f := range []struct {
			name string
			v    *float64
		}{{"score", k.Score}, {"minBaseline", k.MinBaseline}, {"ratio", k.Ratio}} {
			if f.v == nil {
				continue
			}
			if name != query.KindAccessAnomaly {
				return fmt.Errorf("%s.%s: only accessAnomaly takes it", at, f.name)
			}
			if !(*f.v > 0 && *f.v <= 1_000_000) {
				return fmt.Errorf("%s.%s=%g: want above 0 and at most 1000000", at, f.name, *f.v)
			}
		}
		if err := checkAllow(at+".allow", k.Allow); err != nil {
			return err
		}
		n += len(k.Allow)
	}
	if n > maxAllowEntries {
		return fmt.Errorf("%d allow-list entries: at most %d", n, maxAllowEntries)
	}
	return nil
}

func checkAllow(at string, as []Allow) error {
	for i, a := range as {
		id := strings.TrimSpace(a.ID)
		if id == "" || len(id) > maxIDLen {
			return fmt.Errorf("%s[%d].id: want an object id, app id or UPN of 1 to %d characters", at, i, maxIDLen)
		}
		for _, op := range a.Operations {
			if op == "" || len(op) > 64 || strings.IndexFunc(op, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
			}) >= 0 {
				return fmt.Errorf("%s[%d].operations: %q is not an operation name (letters and digits, as SecretGet)", at, i, op)
			}
		}
	}
	return nil
}

// Kind returns the effective tuning of kind name.
func (t *Tuning) Kind(name string) Kind {
	k := t.Kinds[name]
	out := Kind{Name: name, Enabled: k.Enabled != nil && *k.Enabled, Severity: k.Severity}
	if k.Threshold != nil {
		out.Threshold = *k.Threshold
	}
	out.Allow = append(append([]Allow(nil), k.Allow...), t.Allow...)
	if k.SlowMs != nil {
		out.SlowMs = *k.SlowMs
	}
	if k.Score != nil {
		out.Anomaly.Score = *k.Score
	}
	if k.MinBaseline != nil {
		out.Anomaly.MinBaseline = *k.MinBaseline
	}
	if k.Ratio != nil {
		out.Anomaly.Ratio = *k.Ratio
	}
	return out
}

// Enabled lists the kinds that alert, in query.Kinds order.
func (t *Tuning) Enabled() []string {
	var out []string
	for _, name := range query.Kinds {
		if t.Kind(name).Enabled {
			out = append(out, name)
		}
	}
	return out
}

// Hash fingerprints the effective tuning: an evaluation recorded under
// another tuning is done again.
func (t *Tuning) Hash() string { return t.hash }

// Timeout is one attempt's bound.
func (t *Tuning) Timeout() time.Duration {
	return time.Duration(t.Delivery.TimeoutSeconds) * time.Second
}

// Summary is the tuning as status shows it: per kind on/off, severity and
// threshold, the number of allow-list entries (their ids are identities,
// not shown).
func (t *Tuning) Summary() []map[string]any {
	var out []map[string]any
	names := append([]string(nil), query.Kinds...)
	sort.Strings(names)
	for _, name := range names {
		k := t.Kind(name)
		out = append(out, map[string]any{"kind": name, "enabled": k.Enabled, "severity": k.Severity, "threshold": k.Threshold, "allowEntries": len(k.Allow)})
	}
	return out
}
