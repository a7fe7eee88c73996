package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
	"github.com/kvaudit/kvaudit/internal/parse"
	"github.com/kvaudit/kvaudit/internal/query"
)

func TestMain(m *testing.M) { os.Exit(azuritetest.Main(m)) }

const samplesFile = "../../internal/parse/testdata/sekoia-intake-formats-keyvault.jsonl"

func sampleLines(t *testing.T) [][]byte {
	t.Helper()
	data, err := os.ReadFile(samplesFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := splitLines(data)
	if len(lines) != 32 {
		t.Fatalf("%d sample records, want 32", len(lines))
	}
	return lines
}

func parseLine(t *testing.T, line []byte) parse.Record {
	t.Helper()
	p := parse.NewReader(bytes.NewReader(append(line, '\n')), parse.Options{Blob: "b"})
	var rec parse.Record
	if err := p.Next(&rec); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	if err := p.Next(&parse.Record{}); !errors.Is(err, io.EOF) {
		t.Fatalf("more than one record in %s", line)
	}
	return rec
}

// The shifted samples are the samples, apart from their times: every
// other field parses the same, and the times keep their order, within the
// last hours.
func TestShiftTimesChangesOnlyTimes(t *testing.T) {
	lines := sampleLines(t)
	now := time.Date(2026, 12, 1, 3, 7, 30, 0, time.UTC)
	shifted, err := shiftTimes(lines, now)
	if err != nil {
		t.Fatal(err)
	}
	var before, after []time.Time
	for i := range lines {
		a, b := parseLine(t, lines[i]), parseLine(t, shifted[i])
		before, after = append(before, a.Time), append(after, b.Time)
		if !b.Time.After(now.Add(-3*time.Hour)) || b.Time.After(now) {
			t.Errorf("record %d shifted to %s, want within the 3 hours before %s", i+1, b.Time, now)
		}
		a.Time, b.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("record %d differs beyond its time:\n%+v\n%+v", i+1, a, b)
		}
		if len(lines[i]) != len(shifted[i]) {
			t.Errorf("record %d: %d bytes, shifted %d", i+1, len(lines[i]), len(shifted[i]))
		}
	}
	for i := range before {
		for j := range before {
			if before[i].Compare(before[j]) != after[i].Compare(after[j]) {
				t.Fatalf("records %d and %d: order %d before, %d after", i+1, j+1, before[i].Compare(before[j]), after[i].Compare(after[j]))
			}
		}
	}
}

// make run's data answers the README's queries with the default window
// (the last 24 hours), and retention (RetentionDays 90, as the handler
// runs) keeps every record.
func TestSeededSamplesAnswerDefaultWindow(t *testing.T) {
	e := ingesttest.New(t)
	e.Ingester.RetentionDays = 90
	lines, err := shiftTimes(sampleLines(t), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	ctx := context.Background()
	if err := seedLines(ctx, e.Container, lines, 3, func(n string, _ int) { names = append(names, n) }); err != nil {
		t.Fatal(err)
	}
	var records, old int64
	for _, n := range names {
		res := e.Ingest(n)
		records, old = records+res.Records, old+res.TooOld
	}
	if records != 32 || old != 0 {
		t.Fatalf("%d records indexed, %d older than retention; want 32 and 0", records, old)
	}
	q := &query.Querier{Tables: e.Tables}
	for _, c := range []struct {
		params string
		want   int
	}{
		{"vault=testpermissionvault", countLines(lines, "VAULTS/TESTPERMISSIONVAULT")},
		{"caller=john.doe@dummy.onmicrosoft.com&status=4xx", -1},
		{"object=keykey&operation=SecretGet,SecretDelete", -1},
	} {
		v, _ := url.ParseQuery(c.params + "&limit=1000")
		eq, err := query.ParseEvents(v, time.Now(), query.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		if _, err := q.Events(ctx, eq, func(*parse.Record) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n == 0 || c.want >= 0 && n != c.want {
			t.Errorf("events?%s: %d events in the default window, want %d (-1: some)", c.params, n, c.want)
		}
		if !strings.Contains(c.params, "caller") && !strings.Contains(c.params, "object") {
			sv, _ := url.ParseQuery(c.params + "&by=operation")
			sq, err := query.ParseStats(sv, time.Now(), query.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			st, err := q.Stats(ctx, sq)
			if err != nil {
				t.Fatal(err)
			}
			if st.Total != int64(n) {
				t.Errorf("stats?%s: total %d, events %d", c.params, st.Total, n)
			}
		}
	}
}

func countLines(lines [][]byte, s string) int {
	n := 0
	for _, l := range lines {
		if bytes.Contains(l, []byte(s)) {
			n++
		}
	}
	return n
}
