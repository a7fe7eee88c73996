package query

import (
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Parameter names, as the API and the CLI flags spell them.
const (
	ParamVault        = "vault"
	ParamCaller       = "caller"
	ParamIP           = "ip"
	ParamObject       = "object"
	ParamFrom         = "from"
	ParamTo           = "to"
	ParamOperation    = "operation"
	ParamStatus       = "status"
	ParamLimit        = "limit"
	ParamContinuation = "continuation"
	ParamBy           = "by"
	ParamThreshold    = "threshold"
	ParamSlowMs       = "slowMs"
)

// EventsParams, StatsParams and DetectionsParams list the parameters each
// query accepts, in the order the API documents them.
var (
	EventsParams     = []string{ParamVault, ParamCaller, ParamIP, ParamObject, ParamFrom, ParamTo, ParamOperation, ParamStatus, ParamLimit, ParamContinuation}
	StatsParams      = []string{ParamVault, ParamCaller, ParamIP, ParamObject, ParamFrom, ParamTo, ParamOperation, ParamStatus, ParamBy, ParamLimit}
	DetectionsParams = []string{ParamVault, ParamFrom, ParamTo, ParamThreshold, ParamSlowMs}
)

// Stats dimensions (the by parameter).
const (
	ByOperation = "operation"
	ByCaller    = "caller"
	ByIP        = "ip"
	ByStatus    = "status"
	ByObject    = "object"
	ByHour      = "hour"
	ByDay       = "day"
)

// ByValues lists the accepted values of by.
var ByValues = []string{ByOperation, ByCaller, ByIP, ByStatus, ByObject, ByHour, ByDay}

// Defaults and bounds of the parameters.
const (
	DefaultWindow     = 24 * time.Hour
	DefaultMaxDays    = 31
	DefaultLimit      = 100
	MaxLimit          = 1000
	DefaultStatsLimit = 1000
	MaxStatsLimit     = 10000
	DefaultThreshold  = 25
	DefaultSlowMs     = 1000
	maxTextParam      = 512  // caller and object: longer is not an identity or a name
	maxVaultName      = 127  // generous: Key Vault and Managed HSM names are 3–24
	maxListValues     = 50   // operation and status lists
	maxTokenLen       = 4096 // continuation
)

// Instants outside these bounds are refused: tokens carry the window in
// Unix nanoseconds, which an int64 holds until 2262.
var (
	minInstant = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxInstant = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// ParamError is a caller's mistake: an unknown, repeated or malformed
// parameter, or a missing one. Its message says what is wrong and what is
// accepted, and is safe to show the caller. The API answers it with 400.
type ParamError struct {
	Param string // the parameter at fault; "" for a whole-query problem
	Msg   string
}

func (e *ParamError) Error() string {
	if e.Param == "" {
		return e.Msg
	}
	return e.Param + ": " + e.Msg
}

func paramErr(param, format string, args ...any) *ParamError {
	return &ParamError{Param: param, Msg: fmt.Sprintf(format, args...)}
}

// Limits are what a deployment allows. The zero value means the defaults.
type Limits struct {
	// MaxDays bounds a window's length (setting QueryMaxDays; default 31).
	MaxDays int
}

func (l Limits) maxDays() int {
	if l.MaxDays <= 0 {
		return DefaultMaxDays
	}
	return l.MaxDays
}

// Selector names what a query is about. At least one field is set in a
// parsed query; each set field has been validated.
type Selector struct {
	Vault  string // lower-cased vault name: letters, digits, hyphens
	Caller string // an objectId, UPN or appId as given (trimmed)
	IP     string // the canonical text of an IP address
	Object string // a secret, key or certificate name as given (trimmed)
}

// Window is the half-open time range [From, To), in UTC.
type Window struct {
	From, To time.Time
	// FromGiven and ToGiven say which bound the caller gave; the others are
	// defaults. A continuation supplies the bounds a request leaves out, so
	// that paging through "the last 24 hours" does not slide with the clock.
	FromGiven, ToGiven bool
}

// StatusMatch matches the status codes in [Lo, Hi]: one code, or a class
// such as 4xx (400–499).
type StatusMatch struct{ Lo, Hi int }

// Filter narrows the events of a selector.
type Filter struct {
	Operations []string      // operationName values, canonical case, sorted, distinct
	Statuses   []StatusMatch // sorted, distinct
}

// EventsQuery is a parsed GET /api/audit/events.
type EventsQuery struct {
	Selector
	Window
	Filter
	Limit        int
	Continuation string
}

// StatsQuery is a parsed GET /api/audit/stats.
type StatsQuery struct {
	Selector
	Window
	Filter
	By    string // one of ByValues
	Limit int    // most groups answered
}

// DetectionsQuery is a parsed GET /api/audit/detections.
type DetectionsQuery struct {
	Vault string // "" for every vault
	Window
	Threshold int     // mass retrieval: more than this many in a day
	SlowMs    float64 // slow requests: durationMs above this
	// Anomaly tunes the access-anomaly detection (zero: defaults).
	Anomaly AnomalyParams
	// Kinds selects the kinds computed, from Kinds (nil: every kind, as
	// the API answers): a kind left out reads nothing and has no entry in
	// the answer's Summary. An unknown kind is a *ParamError.
	Kinds []string
	// EventWindows, when not nil, are the only parts of Window whose rows
	// the event-scanned kinds (sensitive operations, refused access, old
	// TLS, slow requests) read: their findings then count the events of
	// those parts alone. nil reads the whole Window; an empty list none.
	// A window is cut to Window. The alert engine passes the hours whose
	// counts changed since it last evaluated the day.
	EventWindows []Window
	// Skip, when set, is asked about each finding that needs reads of its
	// own before they are made — a mass-retrieval candidate, with Kind,
	// Caller and Day set — and true leaves it out of the answer unread.
	// The alert engine skips what it has alerted already.
	Skip func(*Finding) bool
}

// params reads url.Values strictly: every name must be known and given at
// most once.
type params struct {
	v url.Values
}

func newParams(v url.Values, accepted []string) (params, error) {
	names := make([]string, 0, len(v))
	for name := range v {
		names = append(names, name)
	}
	sort.Strings(names) // a deterministic first error
	for _, name := range names {
		known := false
		for _, a := range accepted {
			if name == a {
				known = true
				break
			}
		}
		if !known {
			return params{}, paramErr("", "unknown parameter %q; accepted: %s", truncate(name, 64), strings.Join(accepted, ", "))
		}
		if len(v[name]) > 1 {
			return params{}, paramErr(name, "given %d times; give it once (lists are comma-separated)", len(v[name]))
		}
	}
	return params{v: v}, nil
}

func (p params) get(name string) (string, bool) {
	vs, ok := p.v[name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return strings.TrimSpace(vs[0]), true
}

// ParseEvents reads the parameters of an events query. now anchors the
// default window (the 24 hours before now). A *ParamError says what the
// caller got wrong.
func ParseEvents(v url.Values, now time.Time, lim Limits) (*EventsQuery, error) {
	p, err := newParams(v, EventsParams)
	if err != nil {
		return nil, err
	}
	q := &EventsQuery{Limit: DefaultLimit}
	if q.Selector, err = p.selector(true); err != nil {
		return nil, err
	}
	if q.Window, err = p.window(now, lim); err != nil {
		return nil, err
	}
	if q.Filter, err = p.filter(); err != nil {
		return nil, err
	}
	if q.Limit, err = p.intParam(ParamLimit, DefaultLimit, 1, MaxLimit); err != nil {
		return nil, err
	}
	if s, ok := p.get(ParamContinuation); ok {
		if s == "" || len(s) > maxTokenLen {
			return nil, paramErr(ParamContinuation, "want the continuation value of the previous page, unchanged")
		}
		q.Continuation = s
	}
	return q, nil
}

// ParseStats reads the parameters of a stats query; see [ParseEvents].
func ParseStats(v url.Values, now time.Time, lim Limits) (*StatsQuery, error) {
	p, err := newParams(v, StatsParams)
	if err != nil {
		return nil, err
	}
	q := &StatsQuery{By: ByOperation}
	if q.Selector, err = p.selector(true); err != nil {
		return nil, err
	}
	if q.Window, err = p.window(now, lim); err != nil {
		return nil, err
	}
	if q.Filter, err = p.filter(); err != nil {
		return nil, err
	}
	if s, ok := p.get(ParamBy); ok {
		q.By = ""
		for _, b := range ByValues {
			if strings.EqualFold(s, b) {
				q.By = b
			}
		}
		if q.By == "" {
			return nil, paramErr(ParamBy, "%q is not a dimension; accepted: %s", truncate(s, 64), strings.Join(ByValues, ", "))
		}
	}
	if q.Limit, err = p.intParam(ParamLimit, DefaultStatsLimit, 1, MaxStatsLimit); err != nil {
		return nil, err
	}
	return q, nil
}

// ParseDetections reads the parameters of a detections query; see
// [ParseEvents]. Unlike the other queries it needs no selector: without a
// vault it looks at every vault.
func ParseDetections(v url.Values, now time.Time, lim Limits) (*DetectionsQuery, error) {
	p, err := newParams(v, DetectionsParams)
	if err != nil {
		return nil, err
	}
	q := &DetectionsQuery{}
	sel, err := p.selector(false)
	if err != nil {
		return nil, err
	}
	q.Vault = sel.Vault
	if q.Window, err = p.window(now, lim); err != nil {
		return nil, err
	}
	if q.Threshold, err = p.intParam(ParamThreshold, DefaultThreshold, 1, 1_000_000); err != nil {
		return nil, err
	}
	q.SlowMs = DefaultSlowMs
	if s, ok := p.get(ParamSlowMs); ok {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || !(f > 0 && f <= 86_400_000) {
			return nil, paramErr(ParamSlowMs, "want a number of milliseconds above 0 and at most 86400000, got %q", truncate(s, 32))
		}
		q.SlowMs = f
	}
	return q, nil
}

func (p params) selector(required bool) (Selector, error) {
	var s Selector
	if v, ok := p.get(ParamVault); ok {
		if !validVault(v) {
			return s, paramErr(ParamVault, "want a vault name: letters, digits and hyphens, at most %d characters", maxVaultName)
		}
		s.Vault = strings.ToLower(v)
	}
	if v, ok := p.get(ParamCaller); ok {
		if err := validText(ParamCaller, v, "an objectId, UPN or appId"); err != nil {
			return s, err
		}
		s.Caller = v
	}
	if v, ok := p.get(ParamIP); ok {
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return s, paramErr(ParamIP, "want an IPv4 or IPv6 address such as 10.1.2.3 or 2001:db8::1, got %q", truncate(v, 64))
		}
		s.IP = a.String()
	}
	if v, ok := p.get(ParamObject); ok {
		if err := validText(ParamObject, v, "a secret, key or certificate name"); err != nil {
			return s, err
		}
		s.Object = v
	}
	if required && s == (Selector{}) {
		return s, paramErr("", "give at least one of vault, caller, ip or object: a query reads the index of one of them")
	}
	return s, nil
}

func validVault(v string) bool {
	if v == "" || len(v) > maxVaultName {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validText accepts free text that can name a caller or an object: any
// printable UTF-8 (quotes included: UPNs such as o'brien@contoso.com
// exist), bounded. It never reaches a filter unquoted; see plan.go.
func validText(param, v, what string) error {
	if v == "" || len(v) > maxTextParam || !utf8.ValidString(v) {
		return paramErr(param, "want %s: 1 to %d bytes of UTF-8 text", what, maxTextParam)
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return paramErr(param, "want %s without control characters", what)
		}
	}
	return nil
}

func (p params) window(now time.Time, lim Limits) (Window, error) {
	var w Window
	parse := func(name string) (time.Time, bool, error) {
		s, ok := p.get(name)
		if !ok {
			return time.Time{}, false, nil
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || t.Before(minInstant) || !t.Before(maxInstant) {
			return time.Time{}, true, paramErr(name, "want an RFC 3339 instant between 1970 and 2200, such as 2026-11-20T10:00:00Z, got %q", truncate(s, 64))
		}
		return t.UTC(), true, nil
	}
	var err error
	if w.From, w.FromGiven, err = parse(ParamFrom); err != nil {
		return w, err
	}
	if w.To, w.ToGiven, err = parse(ParamTo); err != nil {
		return w, err
	}
	now = now.UTC()
	switch {
	case !w.FromGiven && !w.ToGiven:
		w.To, w.From = now, now.Add(-DefaultWindow)
	case !w.ToGiven:
		w.To = now
	case !w.FromGiven:
		w.From = w.To.Add(-DefaultWindow)
	}
	return w, checkWindow(w, lim)
}

// checkWindow enforces the rules every window obeys, whether it came from
// parameters or from a continuation.
func checkWindow(w Window, lim Limits) error {
	if !w.To.After(w.From) {
		if !w.ToGiven {
			return paramErr(ParamFrom, "%s is not in the past: give to as well", w.From.Format(time.RFC3339Nano))
		}
		return paramErr(ParamTo, "want to after from (from is inclusive, to exclusive)")
	}
	if w.From.Before(minInstant) || !w.To.Before(maxInstant) {
		return paramErr("", "the window must lie between 1970 and 2200")
	}
	if max := time.Duration(lim.maxDays()) * 24 * time.Hour; w.To.Sub(w.From) > max {
		return paramErr("", "the window from %s to %s is longer than %d days (setting QueryMaxDays); narrow from and to",
			w.From.Format(time.RFC3339), w.To.Format(time.RFC3339), lim.maxDays())
	}
	return nil
}

func (p params) filter() (Filter, error) {
	var f Filter
	if s, ok := p.get(ParamOperation); ok {
		parts := splitList(s)
		if len(parts) == 0 || len(parts) > maxListValues {
			return f, paramErr(ParamOperation, "want 1 to %d operationName values, comma-separated", maxListValues)
		}
		seen := map[string]bool{}
		for _, part := range parts {
			if !validOperation(part) {
				return f, paramErr(ParamOperation, "want operationName values such as SecretGet,KeyGet (letters and digits, comma-separated), got %q", truncate(part, 64))
			}
			op := CanonicalOperation(part)
			if !seen[op] {
				seen[op] = true
				f.Operations = append(f.Operations, op)
			}
		}
		sort.Strings(f.Operations)
	}
	if s, ok := p.get(ParamStatus); ok {
		parts := splitList(s)
		if len(parts) == 0 || len(parts) > maxListValues {
			return f, paramErr(ParamStatus, "want 1 to %d status codes or classes, comma-separated", maxListValues)
		}
		seen := map[StatusMatch]bool{}
		for _, part := range parts {
			m, ok := parseStatus(part)
			if !ok {
				return f, paramErr(ParamStatus, "want HTTP status codes or classes such as 403 or 4xx,5xx (comma-separated), got %q", truncate(part, 32))
			}
			if !seen[m] {
				seen[m] = true
				f.Statuses = append(f.Statuses, m)
			}
		}
		sort.Slice(f.Statuses, func(i, j int) bool {
			a, b := f.Statuses[i], f.Statuses[j]
			return a.Lo < b.Lo || a.Lo == b.Lo && a.Hi < b.Hi
		})
	}
	return f, nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func validOperation(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// parseStatus reads "403" (100–599) or a class "4xx" (1xx–5xx).
func parseStatus(s string) (StatusMatch, bool) {
	if len(s) != 3 || s[0] < '1' || s[0] > '5' {
		return StatusMatch{}, false
	}
	if strings.EqualFold(s[1:], "xx") {
		lo := int(s[0]-'0') * 100
		return StatusMatch{lo, lo + 99}, true
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return StatusMatch{}, false
	}
	return StatusMatch{n, n}, true
}

func (m StatusMatch) matches(status int) bool { return status >= m.Lo && status <= m.Hi }

func (f Filter) matchesStatus(status int) bool {
	if len(f.Statuses) == 0 {
		return true
	}
	for _, m := range f.Statuses {
		if m.matches(status) {
			return true
		}
	}
	return false
}

func (f Filter) matchesOperation(op string) bool {
	if len(f.Operations) == 0 {
		return true
	}
	// Exact, as Table Storage compares: counts and scans agree.
	for _, o := range f.Operations {
		if o == op {
			return true
		}
	}
	return false
}

func (p params) intParam(name string, def, lo, hi int) (int, error) {
	s, ok := p.get(name)
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, paramErr(name, "want a whole number from %d to %d, got %q", lo, hi, truncate(s, 32))
	}
	return n, nil
}

// truncate keeps error messages bounded when they quote the caller.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
