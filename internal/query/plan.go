package query

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvaudit/kvaudit/internal/index"
)

// plan is how a query reads the index: one key, over the day partitions of
// the window, newest day first.
//
// Which key: the index holds every event under its vault (an Events row)
// and, in the Postings table, entries pointing at it under each of its
// caller ids, its IP and its object name (see README's Tables). A query
// with several selectors reads the most specific key — caller, then
// object, then ip, then vault. A vault query reads the vault's Events
// partitions, newest first by RowKey, with operations and statuses
// filtered on the server. A caller, object or IP query reads the key's
// posting rows of each day (one RowKey range of one partition), filters
// the entries on our side (vault, ip, object, operations, statuses: the
// entries carry them), orders them newest first by the Events RowKey they
// point at, and reads those Events rows by point reads, concurrently.
type plan struct {
	table string   // short table name (index.TableEvents or index.TablePostings)
	kind  string   // posting kind (index.KindCaller …) when table is Postings
	key   string   // encoded key part
	days  []string // index.DayLayout, newest first
	lo    string   // RowKey bounds of the window: lo <= RowKey < hi
	hi    string
	from  time.Time // the window
	to    time.Time
	// filter holds the server-side predicates of an Events read
	// (operations, statuses), "" when none. Every literal in it comes from
	// a validated parameter and is quoted by odataString.
	filter string
	sel    Selector
	f      Filter
	// fingerprint identifies the query for continuation tokens: the same
	// selectors and filters give the same fingerprint.
	fingerprint string
}

// newPlan plans sel and f over w. Selector must have at least one field set.
func newPlan(sel Selector, f Filter, w Window) *plan {
	p := &plan{sel: sel, f: f}
	switch {
	case sel.Caller != "":
		p.table, p.kind, p.key = index.TablePostings, index.KindCaller, index.PostingKeyPart(sel.Caller)
	case sel.Object != "":
		p.table, p.kind, p.key = index.TablePostings, index.KindObject, index.PostingKeyPart(sel.Object)
	case sel.IP != "":
		p.table, p.kind, p.key = index.TablePostings, index.KindIP, index.PostingKeyPart(sel.IP)
	default:
		p.table, p.key = index.TableEvents, index.EncodeKeyPart(sel.Vault)
		p.filter = strings.Join(f.predicates(), " and ")
	}
	p.days = days(w)
	p.from, p.to = w.From.UTC(), w.To.UTC()
	p.lo, p.hi = index.RowKeyRange(w.From, w.To)
	p.fingerprint = fingerprint("events", p.table, p.kind, p.key, strings.ToLower(sel.Vault), sel.IP,
		strings.ToLower(sel.Object), strings.Join(f.predicates(), " and "))
	return p
}

// predicates are f's server-side predicates.
func (f Filter) predicates() []string {
	var preds []string
	if len(f.Operations) > 0 {
		ors := make([]string, len(f.Operations))
		for i, op := range f.Operations {
			ors[i] = index.PropOp + " eq " + index.ODataString(op)
		}
		preds = append(preds, "("+strings.Join(ors, " or ")+")")
	}
	if len(f.Statuses) > 0 {
		ors := make([]string, len(f.Statuses))
		for i, m := range f.Statuses {
			ors[i] = statusPredicate(m)
		}
		preds = append(preds, "("+strings.Join(ors, " or ")+")")
	}
	return preds
}

func statusPredicate(m StatusMatch) string {
	if m.Lo == m.Hi {
		return index.PropStat + " eq " + strconv.Itoa(m.Lo)
	}
	return "(" + index.PropStat + " ge " + strconv.Itoa(m.Lo) + " and " + index.PropStat + " le " + strconv.Itoa(m.Hi) + ")"
}

// days lists the UTC days [From, To) touches, newest first.
func days(w Window) []string {
	last := w.To.Add(-time.Nanosecond).UTC()
	first := w.From.UTC()
	d := time.Date(last.Year(), last.Month(), last.Day(), 0, 0, 0, 0, time.UTC)
	var out []string
	// Bounded: a parsed window is at most QueryMaxDays long.
	for !d.Before(time.Date(first.Year(), first.Month(), first.Day(), 0, 0, 0, 0, time.UTC)) {
		out = append(out, d.Format(index.DayLayout))
		d = d.AddDate(0, 0, -1)
	}
	return out
}

// partitionFilter is the full filter of one day partition of the
// vault's Events, resuming after the RowKey after when it is not "". (A
// key's posting rows are read with postingFilter.)
func (p *plan) partitionFilter(day, after string) string {
	var b strings.Builder
	b.WriteString("PartitionKey eq ")
	b.WriteString(index.ODataString(p.key + "|" + day))
	b.WriteString(" and RowKey ge ")
	b.WriteString(index.ODataString(p.lo))
	b.WriteString(" and RowKey lt ")
	b.WriteString(index.ODataString(p.hi))
	if after != "" {
		b.WriteString(" and RowKey gt ")
		b.WriteString(index.ODataString(after))
	}
	if p.filter != "" {
		b.WriteString(" and ")
		b.WriteString(p.filter)
	}
	return b.String()
}

func (p *plan) dayIndex(day string) int {
	for i, d := range p.days {
		if d == day {
			return i
		}
	}
	return -1
}

// matchesEntry applies the plan's selectors and filters to a posting
// entry read from the key's partition: the window, then what the entry
// carries. Comparisons are those the server makes on Events rows (exact
// operation names and statuses) and case-insensitive for names.
func (p *plan) matchesEntry(e *index.Entry, rk string) bool {
	if rk < p.lo || rk >= p.hi {
		return false
	}
	if p.sel.Vault != "" && !strings.EqualFold(e.Vault, p.sel.Vault) {
		return false
	}
	// An entry's values are capped (index.CapValue): so are the selectors
	// they are compared with. An IP is compared as its key is: without
	// case (an IPv6 address may be logged in capitals; the selector is
	// canonical, lower case).
	if p.sel.IP != "" && !strings.EqualFold(e.IP, index.CapValue(p.sel.IP)) {
		return false
	}
	if p.sel.Object != "" && !strings.EqualFold(e.Object, index.CapValue(p.sel.Object)) {
		return false
	}
	if len(p.f.Operations) > 0 && !slices.Contains(p.f.Operations, e.Op) {
		return false
	}
	if len(p.f.Statuses) > 0 {
		ok := false
		for _, m := range p.f.Statuses {
			ok = ok || e.Status >= m.Lo && e.Status <= m.Hi
		}
		if !ok {
			return false
		}
	}
	return true
}

// odataDouble is f as an Edm.Double literal: Table Storage compares a
// Double property with a literal of the same type, so it always carries a
// decimal point.
func odataDouble(f float64) string {
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}
