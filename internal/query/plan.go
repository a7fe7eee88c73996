package query

import (
	"strconv"
	"strings"
	"time"

	"github.com/kvaudit/kvaudit/internal/index"
)

// plan is how a query reads the index: one key of one table, over the day
// partitions of the window, newest day first. Concatenating the days in
// that order keeps the rows newest first, because within a partition the
// RowKey is inverted time.
//
// Which key: the index holds every event under its vault (Events) and under
// each of its caller ids, its IP and its object name (ByCaller, ByIp,
// ByObject, full copies). A query with several selectors reads the table of
// the most specific one — caller, then object, then ip, then vault — and
// narrows by the others: vault and ip by server-side filters on the Vault
// and CallerIpAddress properties (both stored in the form the parameters
// are normalized to), object on our side, because Table Storage compares
// strings case-sensitively while object names are looked up
// case-insensitively. The caller is never a secondary selector.
type plan struct {
	table string   // short table name (index.TableEvents …)
	key   string   // encoded key part: PartitionKey = key + "|" + day
	days  []string // index.DayLayout, newest first
	lo    string   // RowKey bounds of the window: lo <= RowKey < hi
	hi    string
	// filter holds the server-side predicates beyond keys (secondary
	// selectors, operations, statuses), "" when none. Every literal in it
	// comes from a validated parameter and is quoted by odataString.
	filter string
	// object, when set, must equal the row's ObjectName case-insensitively
	// (lower-cased here).
	object string
	// fingerprint identifies the query for continuation tokens: the same
	// selectors and filters give the same fingerprint.
	fingerprint string
}

// newPlan plans sel and f over w. Selector must have at least one field set.
func newPlan(sel Selector, f Filter, w Window) *plan {
	p := &plan{}
	var preds []string
	switch {
	case sel.Caller != "":
		p.table, p.key = index.TableByCaller, index.EncodeKeyPart(sel.Caller)
	case sel.Object != "":
		p.table, p.key = index.TableByObject, index.EncodeKeyPart(sel.Object)
	case sel.IP != "":
		p.table, p.key = index.TableByIP, index.EncodeKeyPart(sel.IP)
	default:
		p.table, p.key = index.TableEvents, index.EncodeKeyPart(sel.Vault)
	}
	if sel.Caller != "" && sel.Object != "" {
		p.object = strings.ToLower(sel.Object)
	}
	if sel.IP != "" && p.table != index.TableByIP {
		preds = append(preds, index.PropCallerIPAddress+" eq "+index.ODataString(sel.IP))
	}
	if sel.Vault != "" && p.table != index.TableEvents {
		preds = append(preds, index.PropVault+" eq "+index.ODataString(sel.Vault))
	}
	preds = append(preds, f.predicates()...)
	p.filter = strings.Join(preds, " and ")
	p.days = days(w)
	p.lo, p.hi = index.RowKeyRange(w.From, w.To)
	p.fingerprint = fingerprint("events", p.table, p.key, p.filter, p.object)
	return p
}

// predicates are f's server-side predicates.
func (f Filter) predicates() []string {
	var preds []string
	if len(f.Operations) > 0 {
		ors := make([]string, len(f.Operations))
		for i, op := range f.Operations {
			ors[i] = index.PropOperationName + " eq " + index.ODataString(op)
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
		return index.PropStatus + " eq " + strconv.Itoa(m.Lo)
	}
	return "(" + index.PropStatus + " ge " + strconv.Itoa(m.Lo) + " and " + index.PropStatus + " le " + strconv.Itoa(m.Hi) + ")"
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

// partitionFilter is the full filter of one day partition, resuming after
// the RowKey after when it is not "".
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

// matches applies the predicates Table Storage cannot (case-insensitive
// object name).
func (p *plan) matches(r *row) bool {
	return p.object == "" || strings.ToLower(r.ObjectName) == p.object
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
