package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/index"
)

// TableAlerts is the state table's name after the index prefix
// (kvauditAlerts).
const TableAlerts = "Alerts"

// Alert states, in the table and in status.
const (
	// StateClaimed: an invocation won the insert and is delivering; one
	// whose claim is older than the lease crashed, and another takes over.
	StateClaimed = "claimed"
	// StateRetrying: some sink failed and is due again at NextAt.
	StateRetrying = "retrying"
	// StateDelivered: every sink took it.
	StateDelivered = "delivered"
	// StateUndelivered: some sink still refused it after the last attempt.
	StateUndelivered = "undelivered"
	// StateRecorded: no sink was configured when it was found.
	StateRecorded = "recorded"
)

// Sink states.
const (
	sinkPending     = "pending"
	sinkDelivered   = "delivered"
	sinkRetrying    = "retrying"
	sinkUndelivered = "undelivered"
)

// SinkState is one sink's delivery of one alert.
type SinkState struct {
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
	Last     string `json:"last,omitempty"`  // RFC 3339 of the last attempt
	Error    string `json:"error,omitempty"` // why the last attempt failed, no URL or secret in it
}

// Record is one alert's row: PartitionKey "f|YYYYMMDD" (the window's
// day), RowKey the alert id. Every property is a string, so the row reads
// back as written on Azure and Azurite alike.
type Record struct {
	PartitionKey string `json:"PartitionKey"`
	RowKey       string `json:"RowKey"`
	Kind         string `json:"Kind"`
	Vault        string `json:"Vault"`
	Window       string `json:"Window"`
	Severity     string `json:"Severity"`
	State        string `json:"State"`
	Owner        string `json:"Owner,omitempty"`
	ClaimedAt    string `json:"ClaimedAt,omitempty"`
	NextAt       string `json:"NextAt,omitempty"`
	Sinks        string `json:"Sinks"`   // JSON: sink name → SinkState
	Payload      string `json:"Payload"` // the Alert's JSON
	CreatedAt    string `json:"CreatedAt"`
	UpdatedAt    string `json:"UpdatedAt"`

	etag azcore.ETag
}

// Alert decodes the record's payload.
func (r *Record) Alert() (*Alert, error) {
	var a Alert
	if err := json.Unmarshal([]byte(r.Payload), &a); err != nil {
		return nil, fmt.Errorf("alert: row %s: unreadable payload: %w", r.RowKey, err)
	}
	return &a, nil
}

// SinkStates decodes the record's per-sink states.
func (r *Record) SinkStates() map[string]*SinkState {
	m := map[string]*SinkState{}
	_ = json.Unmarshal([]byte(r.Sinks), &m) // written by us; a planted bad value reads as no sinks
	for k, v := range m {
		if v == nil {
			delete(m, k)
		}
	}
	return m
}

func (r *Record) setSinks(m map[string]*SinkState) {
	b, _ := json.Marshal(m)
	r.Sinks = string(b)
}

// maxPayload bounds a row's payload: a string property holds 64 KiB
// (32 K UTF-16 units); JSON of our alerts is ASCII-heavy, and the bound
// leaves room for the other properties in the 1 MiB entity.
const maxPayload = 30000

// Store keeps alert state in the Alerts table beside the index. Safe for
// concurrent use. Every write is conditional: an insert fails if the row
// exists (a claim is won once), an update carries the ETag read
// (If-Match), so two invocations never both think they own an alert.
type Store struct {
	tables *index.Tables

	mu      sync.Mutex
	ensured bool
}

// NewStore is the state table of tables' prefix. No I/O.
func NewStore(tables *index.Tables) *Store { return &Store{tables: tables} }

func (s *Store) client() *aztables.Client { return s.tables.Client(TableAlerts) }

// Name is the table's full name.
func (s *Store) Name() string { return s.tables.Name(TableAlerts) }

// ensure creates the table once; an existing table is success.
func (s *Store) ensure(ctx context.Context, again bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ensured && !again {
		return nil
	}
	_, err := s.client().CreateTable(ctx, nil)
	if err = azstore.Classify(err); err != nil && !errors.Is(err, azstore.ErrExists) {
		return fmt.Errorf("alert: create table %s: %w", s.Name(), err)
	}
	s.ensured = true
	return nil
}

// do runs op once the table exists, and once more after creating it
// again when op finds it missing (dropped, or a new deployment).
func (s *Store) do(ctx context.Context, op func() error) error {
	if err := s.ensure(ctx, false); err != nil {
		return err
	}
	err := op()
	if errors.Is(err, azstore.ErrTableNotFound) {
		if err := s.ensure(ctx, true); err != nil {
			return err
		}
		err = op()
	}
	return err
}

// ErrLost is a conditional update that lost: another invocation changed
// the row since it was read (it took the alert over).
var ErrLost = errors.New("alert: changed by another invocation")

func dayPartition(window string) string {
	d := window
	if len(d) > 10 {
		d = d[:10]
	}
	t, err := time.Parse(time.DateOnly, d)
	if err != nil {
		return "f|" + d
	}
	return "f|" + t.Format(index.DayLayout)
}

// Claim inserts the alert's row, owned by owner, unless it exists. It
// returns the new row and true when this call won; nil and false when
// the alert was claimed before (by anyone, at any time). Safe to call
// from any number of invocations at once: exactly one insert succeeds.
func (s *Store) Claim(ctx context.Context, a *Alert, sinks []string, owner string, now time.Time) (*Record, bool, error) {
	payload, err := marshalBounded(a, maxPayload)
	if err != nil {
		return nil, false, err
	}
	ts := now.UTC().Format(time.RFC3339Nano)
	r := &Record{
		PartitionKey: dayPartition(a.Window), RowKey: a.ID, Kind: a.Kind, Vault: a.Vault, Window: a.Window,
		Severity: a.Severity, State: StateClaimed, Owner: owner, ClaimedAt: ts,
		Payload: string(payload), CreatedAt: ts, UpdatedAt: ts,
	}
	m := map[string]*SinkState{}
	for _, name := range sinks {
		m[name] = &SinkState{State: sinkPending}
	}
	r.setSinks(m)
	if len(sinks) == 0 {
		r.State, r.Owner, r.ClaimedAt = StateRecorded, "", ""
	}
	body, err := json.Marshal(r)
	if err != nil {
		return nil, false, err
	}
	err = s.do(ctx, func() error {
		resp, err := s.client().AddEntity(ctx, body, nil)
		if err == nil {
			r.etag = resp.ETag
		}
		return azstore.Classify(err)
	})
	switch {
	case errors.Is(err, azstore.ErrExists):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("alert: claim %s: %w", a.ID, err)
	}
	return r, true, nil
}

// Save writes r back if nobody changed it since it was read (If-Match);
// ErrLost otherwise. On success r holds the new ETag.
func (s *Store) Save(ctx context.Context, r *Record, now time.Time) error {
	r.UpdatedAt = now.UTC().Format(time.RFC3339Nano)
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	etag := r.etag
	err = s.do(ctx, func() error {
		resp, err := s.client().UpdateEntity(ctx, body, &aztables.UpdateEntityOptions{IfMatch: &etag, UpdateMode: aztables.UpdateModeReplace})
		if err == nil {
			r.etag = resp.ETag
		}
		return azstore.Classify(err)
	})
	switch {
	case errors.Is(err, azstore.ErrConflict), errors.Is(err, azstore.ErrNotFound):
		return ErrLost
	case err != nil:
		return fmt.Errorf("alert: save %s: %w", r.RowKey, err)
	}
	return nil
}

// Existing returns the ids of the alerts of day (UTC) already in the
// table, whatever their state: what an evaluation must not claim again.
func (s *Store) Existing(ctx context.Context, day time.Time) (map[string]bool, error) {
	pk := "f|" + day.UTC().Format(index.DayLayout)
	out := map[string]bool{}
	filter := "PartitionKey eq " + index.ODataString(pk)
	sel := "RowKey"
	err := s.list(ctx, filter, sel, func(r *Record) bool { out[r.RowKey] = true; return true })
	return out, err
}

// list calls fn for each row of filter (with $select sel, "" for all)
// until it returns false.
func (s *Store) list(ctx context.Context, filter, sel string, fn func(*Record) bool) error {
	opts := &aztables.ListEntitiesOptions{Filter: &filter}
	if sel != "" {
		opts.Select = &sel
	}
	return s.do(ctx, func() error {
		pager := s.client().NewListEntitiesPager(opts)
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return azstore.Classify(err)
			}
			for _, e := range page.Entities {
				var r Record
				if err := json.Unmarshal(e, &r); err != nil {
					return fmt.Errorf("alert: unreadable row: %w", err)
				}
				var meta struct {
					ETag string `json:"odata.etag"`
				}
				_ = json.Unmarshal(e, &meta)
				r.etag = azcore.ETag(meta.ETag)
				if !fn(&r) {
					return nil
				}
			}
		}
		return nil
	})
}

// Due lists the alerts of the days from..to (UTC, inclusive) that an
// invocation should deliver now: retrying ones whose NextAt has come, and
// claimed ones whose claim is older than lease (the claimer died).
func (s *Store) Due(ctx context.Context, from, to time.Time, now time.Time, lease time.Duration) ([]*Record, error) {
	filter := partitionRange(from, to) + " and (State eq 'retrying' or State eq 'claimed')"
	var out []*Record
	err := s.list(ctx, filter, "", func(r *Record) bool {
		switch r.State {
		case StateRetrying:
			if t, err := time.Parse(time.RFC3339Nano, r.NextAt); err != nil || !t.After(now) {
				out = append(out, r)
			}
		case StateClaimed:
			if t, err := time.Parse(time.RFC3339Nano, r.ClaimedAt); err != nil || now.Sub(t) > lease {
				out = append(out, r)
			}
		}
		return len(out) < maxListed
	})
	return out, err
}

func partitionRange(from, to time.Time) string {
	return "PartitionKey ge " + index.ODataString("f|"+from.UTC().Format(index.DayLayout)) +
		" and PartitionKey le " + index.ODataString("f|"+to.UTC().Format(index.DayLayout))
}

// maxListed bounds the rows one listing returns.
const maxListed = 1000

// ListOptions select alerts to list.
type ListOptions struct {
	From, To time.Time // UTC days, inclusive
	Vault    string    // "" for every vault
	States   []string  // none for every state
	Limit    int       // at most this many, newest first (default and bound 1000)
}

// List returns the alerts of the days opt names, newest first, and
// whether more matched than Limit.
func (s *Store) List(ctx context.Context, opt ListOptions) ([]*Record, bool, error) {
	limit := opt.Limit
	if limit <= 0 || limit > maxListed {
		limit = maxListed
	}
	filter := partitionRange(opt.From, opt.To)
	if opt.Vault != "" {
		filter += " and Vault eq " + index.ODataString(opt.Vault)
	}
	if len(opt.States) > 0 {
		f := ""
		for i, st := range opt.States {
			if i > 0 {
				f += " or "
			}
			f += "State eq " + index.ODataString(st)
		}
		filter += " and (" + f + ")"
	}
	var out []*Record
	more := false
	err := s.list(ctx, filter, "", func(r *Record) bool {
		// Rows come by day, oldest first; keep reading past the limit
		// (bounded) so that the newest are the ones kept.
		out = append(out, r)
		if len(out) > 4*maxListed {
			sortNewest(out)
			out, more = out[:limit], true
		}
		return true
	})
	if err != nil {
		return nil, false, err
	}
	sortNewest(out)
	if len(out) > limit {
		out, more = out[:limit], true
	}
	return out, more, nil
}

func sortNewest(rs []*Record) {
	sort.SliceStable(rs, func(i, j int) bool {
		if rs[i].CreatedAt != rs[j].CreatedAt {
			return rs[i].CreatedAt > rs[j].CreatedAt
		}
		return rs[i].RowKey < rs[j].RowKey
	})
}

// evalRow is what the last complete evaluation of a vault-day saw: the
// day's request total and its 24 hourly totals (from the counts), and the
// tuning. Partition "e|YYYYMMDD", RowKey the vault's key part.
type evalRow struct {
	PartitionKey string `json:"PartitionKey"`
	RowKey       string `json:"RowKey"`
	Total        string `json:"Total"`
	Hours        string `json:"Hours,omitempty"` // 24 decimal totals, comma-separated
	Tuning       string `json:"Tuning"`
	At           string `json:"At"`
}

// Evaluation is what the last complete evaluation of a vault-day saw.
type Evaluation struct {
	Total int64
	// Hours are the day's hourly request totals, hour 0 first: 24 numbers,
	// or nil when the row holds none that can be trusted (a row of an
	// earlier kvaudit, or one not of our writing) — then the whole day
	// is evaluated again.
	Hours  []int64
	Tuning string
}

// maxHoursText bounds the Hours property read back: 24 numbers of at
// most 19 digits and their commas. A longer value is not ours.
const maxHoursText = 24*19 + 23

// parseHours reads an evalRow's Hours: exactly 24 non-negative decimal
// numbers, else nil.
func parseHours(s string) []int64 {
	if s == "" || len(s) > maxHoursText {
		return nil
	}
	parts := strings.Split(s, ",")
	if len(parts) != 24 {
		return nil
	}
	out := make([]int64, 24)
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 {
			return nil
		}
		out[i] = n
	}
	return out
}

func formatHours(hours []int64) string {
	if len(hours) != 24 {
		return ""
	}
	parts := make([]string, 24)
	for i, n := range hours {
		parts[i] = strconv.FormatInt(n, 10)
	}
	return strings.Join(parts, ",")
}

// Evaluated returns what the vault-day's last complete evaluation saw;
// nil when it was never evaluated or its row is unreadable (evaluate
// again).
func (s *Store) Evaluated(ctx context.Context, vault string, day time.Time) (*Evaluation, error) {
	var resp aztables.GetEntityResponse
	err := s.do(ctx, func() error {
		var err error
		resp, err = s.client().GetEntity(ctx, "e|"+day.UTC().Format(index.DayLayout), index.EncodeKeyPart(vault), nil)
		return azstore.Classify(err)
	})
	if errors.Is(err, azstore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("alert: read evaluation of %s: %w", vault, err)
	}
	var row evalRow
	if err := json.Unmarshal(resp.Value, &row); err != nil {
		return nil, nil
	}
	n, err := strconv.ParseInt(row.Total, 10, 64)
	if err != nil {
		return nil, nil
	}
	return &Evaluation{Total: n, Hours: parseHours(row.Hours), Tuning: row.Tuning}, nil
}

// SetEvaluated records that the vault-day was evaluated completely as ev
// says. An upsert: two evaluations racing may leave the older totals,
// which only makes the next sweep evaluate again the hours they differ in.
func (s *Store) SetEvaluated(ctx context.Context, vault string, day time.Time, ev Evaluation, now time.Time) error {
	body, _ := json.Marshal(evalRow{
		PartitionKey: "e|" + day.UTC().Format(index.DayLayout), RowKey: index.EncodeKeyPart(vault),
		Total: strconv.FormatInt(ev.Total, 10), Hours: formatHours(ev.Hours), Tuning: ev.Tuning, At: now.UTC().Format(time.RFC3339),
	})
	err := s.do(ctx, func() error {
		_, err := s.client().UpsertEntity(ctx, body, &aztables.UpsertEntityOptions{UpdateMode: aztables.UpdateModeReplace})
		return azstore.Classify(err)
	})
	if err != nil {
		return fmt.Errorf("alert: record evaluation of %s: %w", vault, err)
	}
	return nil
}

// Retain deletes the rows of days before cutoff: alerts name callers and
// IPs, personal data kept as long as the index keeps the events. It
// returns the rows deleted.
func (s *Store) Retain(ctx context.Context, cutoff time.Time) (int, error) {
	day := cutoff.UTC().Format(index.DayLayout)
	filter := "(PartitionKey ge 'f|' and PartitionKey lt " + index.ODataString("f|"+day) + ")" +
		" or (PartitionKey ge 'e|' and PartitionKey lt " + index.ODataString("e|"+day) + ")"
	var old []*Record
	err := s.list(ctx, filter, "PartitionKey,RowKey", func(r *Record) bool { old = append(old, r); return len(old) < 10*maxListed })
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range old {
		_, err := s.client().DeleteEntity(ctx, r.PartitionKey, r.RowKey, nil)
		if err = azstore.Classify(err); err != nil && !errors.Is(err, azstore.ErrNotFound) {
			return n, fmt.Errorf("alert: retention: %w", err)
		}
		n++
	}
	return n, nil
}
