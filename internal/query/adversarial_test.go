package query

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// randomUA is a User-Agent an attacker chooses: n random characters.
func randomUA(rnd *rand.Rand, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/;()._ -"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rnd.IntN(len(alphabet))]
	}
	return string(b)
}

// The attack of issue 15, item 1: one caller reads one secret n times in
// one hour, each request with its own random User-Agent of 300–4,000
// characters. Before, a posting row of that caller, IP and object grew
// past Table Storage's 1 MiB, was refused and skipped: 63 % of the
// requests vanished from every lookup, from stats by caller, IP and
// object, and from the mass-retrieval finding. Every answer must count
// every request. (`make chaos` runs the same through the handler binary
// with 6,000 records.)
func TestLongRandomUserAgentsHideNoRequest(t *testing.T) {
	const n = 1500
	e := newEnv(t)
	rnd := rand.New(rand.NewPCG(15, 1))
	hour := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Hour)
	evs := make([]ev, n)
	for i := range evs {
		evs[i] = ev{t: hour.Add(time.Duration(i) * 2 * time.Second), oid: "attacker-oid", ip: "203.0.113.7",
			object: "db-password", client: randomUA(rnd, 300+rnd.IntN(3701))}
	}
	names := e.load(0, evs)
	for _, name := range names {
		if res := e.ingest(name); res.Rejected != 0 {
			t.Fatalf("%s: %d rows refused", name, res.Rejected)
		}
	}
	window := "&from=" + hour.Format(time.RFC3339) + "&to=" + hour.Add(time.Hour).Format(time.RFC3339)
	for _, sel := range []string{"vault=vault1", "caller=attacker-oid", "ip=203.0.113.7", "object=db-password"} {
		ids, _ := e.events(sel + "&limit=1000" + window)
		if len(ids) != n {
			t.Errorf("events?%s: %d, want %d", sel, len(ids), n)
		}
	}
	for _, q := range []string{"vault=vault1&by=caller", "caller=attacker-oid&by=caller", "ip=203.0.113.7&by=ip", "object=db-password&by=object",
		"vault=vault1&by=ip", "vault=vault1&by=object"} {
		if st := e.stats(q + window); st.Total != n || len(st.Groups) != 1 || st.Groups[0].Count != n {
			t.Errorf("stats?%s: total %d, groups %v; want %d in one group", q, st.Total, st.Groups, n)
		}
	}
	d := e.detections("threshold=25" + window)
	found := false
	for _, f := range d.Findings {
		if f.Kind == KindMassRetrieval && f.Caller == "attacker-oid" {
			found = true
			if f.Count != n {
				t.Errorf("mass retrieval counts %d, want %d", f.Count, n)
			}
			if len(f.ClientInfos) != maxListEntries {
				t.Errorf("%d clientInfos listed, want the top %d", len(f.ClientInfos), maxListEntries)
			}
			for _, g := range f.ClientInfos {
				if len(g.Key) > index.MaxEntryValue {
					t.Errorf("a clientInfo of %d bytes listed", len(g.Key))
				}
			}
		}
	}
	if !found {
		t.Errorf("no mass-retrieval finding for the attacker: %+v", d.Summary)
	}
}

// A lookup page keeps what it returns: it reads the key's newest hours
// first and stops once no older hour can hold one of its entries, so a
// key with far more entries in a day than one request may decode still
// pages — every entry once — while stats over it, which must read them
// all, is refused (issue 15, item 2).
func TestLookupPageReadsOnlyTheHoursItNeeds(t *testing.T) {
	const perHour = 100
	e := newEnv(t)
	day := time.Now().UTC().AddDate(0, 0, -1).Truncate(24 * time.Hour)
	var evs []ev
	for h := range 24 {
		for i := range perHour {
			evs = append(evs, ev{t: day.Add(time.Duration(h)*time.Hour + time.Duration(i)*30*time.Second), oid: fmt.Sprintf("u%d", i%5),
				ip: "198.51.100.9", object: fmt.Sprintf("s%d", i%7)})
		}
	}
	e.load(0, evs)
	// A page of 100 reads the hour of its token (whose entries up to the
	// token it skips) and the next two back at most: far from the 2,400
	// entries of the day.
	e.q.MaxLookupEntries = 3*perHour + perHour/2
	e.q.MaxScanRows = 1000
	window := "&from=" + day.Format(time.RFC3339) + "&to=" + day.AddDate(0, 0, 1).Format(time.RFC3339)
	ids, pages := e.events("ip=198.51.100.9&limit=100" + window)
	wantIDs := want(evs, 0, func(ev) bool { return true })
	if len(ids) != len(wantIDs) {
		t.Fatalf("%d events in %d pages, want %d", len(ids), pages, len(wantIDs))
	}
	for i := range ids {
		if ids[i] != wantIDs[i] {
			t.Fatalf("event %d is %s, want %s", i, ids[i], wantIDs[i])
		}
	}
	// A page of the middle of the day, with a filter, still reads little.
	if got, _ := e.events("ip=198.51.100.9&object=s3&limit=10&from=" + day.Add(10*time.Hour).Format(time.RFC3339) +
		"&to=" + day.Add(11*time.Hour).Format(time.RFC3339)); len(got) != len(want(evs, 0, func(x ev) bool {
		return x.object == "s3" && x.t.Hour() == 10
	})) {
		t.Errorf("object s3 in hour 10: %d events", len(got))
	}
	sq, err := ParseStats(mustValues(t, "ip=198.51.100.9"+window), time.Now(), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var pe *ParamError
	if _, err := e.q.Stats(context.Background(), sq); !errors.As(err, &pe) {
		t.Fatalf("stats over %d entries with MaxScanRows 1000: %v, want a ParamError", len(evs), err)
	}
}

// Sizes read back from the index are claims: a posting row planted by
// anyone with Table Data Contributor that inflates to 63 MB, or claims
// millions of entries, fails the query with an error naming the row,
// after a bounded allocation — never a truncated answer, never an out of
// memory (issue 15, item 3).
func TestPlantedBombRowsFailBounded(t *testing.T) {
	e := newEnv(t)
	now := time.Now().UTC().Add(-time.Hour)
	e.load(0, []ev{{t: now, oid: "victim", ip: "10.1.1.1", object: "kv-secret"}})
	day := now.Format(index.DayLayout)
	// The bomb: a string table declaring 7,000,000 strings, 63 MB of
	// zeros, about 61 KB compressed.
	bomb := deflateZeros(t, 63<<20, 7_000_000)
	body := fmt.Appendf(nil, `{"PartitionKey":"c|%s","RowKey":"victim|h%02d|00000000deadbeef|000000000000","V":2,"N":100}`, day, 23-now.Hour())
	ent := map[string]any{}
	if err := jsonUnmarshal(body, &ent); err != nil {
		t.Fatal(err)
	}
	// Its span says it holds the last hour, so the lookup reads it.
	ent["T0"], ent["T1"] = index.SpanText(index.InvTicks(time.Now())), index.SpanText(index.InvTicks(now.Add(-time.Hour)))
	putBinary(ent, "P", bomb)
	e.putEntity(index.TablePostings, ent)

	var alloc uint64
	var err error
	alloc = heapDuring(func() {
		eq, perr := ParseEvents(mustValues(t, "caller=victim"), time.Now(), Limits{})
		if perr != nil {
			t.Fatal(perr)
		}
		_, err = e.q.Events(context.Background(), eq, func(*parse.Record) error { return nil })
	})
	if err == nil || !strings.Contains(err.Error(), "inflates past its limit") || !strings.Contains(err.Error(), "deadbeef") {
		t.Fatalf("events over a bomb row: %v, want an error naming the row", err)
	}
	if alloc > 64<<20 {
		t.Errorf("refusing the bomb allocated %d MiB", alloc>>20)
	}
	t.Logf("bomb row (%d KB) refused after allocating %d MiB: %v", len(bomb)>>10, alloc>>20, err)
}

// Noise cannot crowd out the keys a person looks for: 1,000
// unauthenticated requests to random secret names at the top of an hour,
// then the hour's real traffic. Before, every real object of the hour was
// counted under ~other; now the successful requests' objects, callers and
// IPs are exact, and the noise is named for what it is (issue 15,
// item 4).
func TestNoiseCannotCrowdOutRealKeys(t *testing.T) {
	e := newEnv(t)
	rnd := rand.New(rand.NewPCG(4, 15))
	hour := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Hour)
	var evs []ev
	for i := range 1000 {
		evs = append(evs, ev{t: hour.Add(time.Duration(i) * time.Millisecond), status: 401, op: "SecretGet",
			ip: fmt.Sprintf("198.51.%d.%d", rnd.IntN(256), rnd.IntN(256)), object: "x" + randomUA(rnd, 12)[:12]})
	}
	for i := range 1200 {
		evs = append(evs, ev{t: hour.Add(time.Minute + time.Duration(i)*time.Second), status: 403, op: "SecretGet", oid: "insider",
			ip: "192.0.2.66", object: fmt.Sprintf("probe-%04d", i)})
	}
	realObjects := map[string]int64{}
	for i := range 90 {
		obj := fmt.Sprintf("app-secret-%d", i%9)
		realObjects[obj]++
		evs = append(evs, ev{t: hour.Add(10*time.Minute + time.Duration(i)*time.Second), oid: fmt.Sprintf("app-%d", i%3), ip: "10.0.0.5", object: obj})
	}
	e.load(0, evs)
	window := "&from=" + hour.Format(time.RFC3339) + "&to=" + hour.Add(time.Hour).Format(time.RFC3339)
	st := e.stats("vault=vault1&by=object&limit=10000" + window)
	got := map[string]int64{}
	for _, g := range st.Groups {
		got[g.Key] = g.Count
	}
	for obj, n := range realObjects {
		if got[obj] != n {
			t.Errorf("object %s: %d, want %d", obj, got[obj], n)
		}
	}
	if got["~other"] != 0 || got["~other:unauthenticated"] == 0 || got["~other:refused"] == 0 {
		t.Errorf("other groups: %d %d %d", got["~other"], got["~other:unauthenticated"], got["~other:refused"])
	}
	if st.Total != int64(len(evs)) {
		t.Errorf("total %d, want %d", st.Total, len(evs))
	}
	top := e.stats("vault=vault1&by=object&limit=9&status=2xx" + window)
	if top.Total != 90 {
		t.Errorf("successful requests: %d", top.Total)
	}
	callers := e.stats("vault=vault1&by=caller" + window)
	for _, c := range []string{"app-0", "app-1", "app-2"} {
		found := false
		for _, g := range callers.Groups {
			found = found || g.Key == c && g.Count == 30
		}
		if !found {
			t.Errorf("caller %s not counted 30 times: %v", c, callers.Groups)
		}
	}
}

// deflateZeros is a DEFLATE stream (with index's preset dictionary) of a
// posting string table declaring strs strings, then n zero bytes.
func deflateZeros(t *testing.T, n, strs int) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := flate.NewWriterDict(&out, flate.BestCompression, index.RecordDict())
	if err != nil {
		t.Fatal(err)
	}
	w.Write(binary.AppendUvarint(nil, uint64(strs)))
	zero := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, len(zero))
		w.Write(zero[:k])
		n -= k
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// putBinary sets an Edm.Binary property (and its continuations past
// 64,000 bytes) on an entity map.
func putBinary(ent map[string]any, name string, v []byte) {
	for i := 0; len(v) > 0; i++ {
		part := v[:min(len(v), 64000)]
		v = v[len(part):]
		n := name
		if i > 0 {
			n += strconv.Itoa(i)
		}
		ent[n+"@odata.type"] = "Edm.Binary"
		ent[n] = base64.StdEncoding.EncodeToString(part)
	}
}

// putEntity upserts ent into a table of the index as anyone with Table
// Data Contributor could.
func (e *env) putEntity(table string, ent map[string]any) {
	e.t.Helper()
	body, err := json.Marshal(ent)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.tables.Client(table).UpsertEntity(context.Background(), body, nil); err != nil {
		e.t.Fatal(err)
	}
}

// heapDuring returns what fn allocated.
func heapDuring(fn func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}
