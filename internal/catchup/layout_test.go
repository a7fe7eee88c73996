package catchup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
	"github.com/kvaudit/kvaudit/internal/parse"
	"github.com/kvaudit/kvaudit/internal/query"
)

// toLayout1 makes the index look as layout 1 left it: checkpoints without
// Layout, Events rows of named columns without V or R, no postings, a
// ByCaller table with rows.
func toLayout1(t *testing.T, e *ingesttest.Env) {
	t.Helper()
	ctx := context.Background()
	replace := &aztables.UpsertEntityOptions{UpdateMode: aztables.UpdateModeReplace}
	for _, r := range e.Rows(index.TableEvents) {
		old := map[string]any{"PartitionKey": r["PartitionKey"], "RowKey": r["RowKey"]}
		for _, k := range []string{index.PropTime, index.PropVault, index.PropOperationName, index.PropCorrelationID, index.PropObjectID, index.PropCallerIPAddress} {
			old[k] = r[k]
		}
		old[index.PropStatus] = int(r[index.PropStatus].(float64))
		body, _ := json.Marshal(old)
		if _, err := e.Tables.Client(index.TableEvents).UpsertEntity(ctx, body, replace); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range e.Rows(index.TablePostings) {
		if _, err := e.Tables.Client(index.TablePostings).DeleteEntity(ctx, r["PartitionKey"].(string), r["RowKey"].(string), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range e.Rows(index.TableBlobs) {
		if r["Kind"] != "checkpoint" {
			continue
		}
		delete(r, "Layout")
		delete(r, "Timestamp")
		for k := range r {
			if strings.HasPrefix(k, "odata.") {
				delete(r, k)
			}
		}
		body, _ := json.Marshal(r)
		if _, err := e.Tables.Client(index.TableBlobs).UpsertEntity(ctx, body, replace); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Tables.Client(index.TableByCaller).CreateTable(ctx, nil); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"PartitionKey": "oid-1|20261120", "RowKey": "x", "Time": "2026-11-20T10:00:00Z"})
	if _, err := e.Tables.Client(index.TableByCaller).UpsertEntity(ctx, body, nil); err != nil {
		t.Fatal(err)
	}
}

func events(t *testing.T, q *query.Querier, params string) ([]string, error) {
	t.Helper()
	v, err := url.ParseQuery(params)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for {
		eq, err := query.ParseEvents(v, now, query.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		next, err := q.Events(context.Background(), eq, func(r *parse.Record) error {
			ids = append(ids, r.CorrelationID)
			return nil
		})
		if err != nil || next == "" {
			return ids, err
		}
		v.Set(query.ParamContinuation, next)
	}
}

// An index of layout 1 is refused, not half-read, by queries and named by
// status; backfill rebuilds it — events, postings, counts — and drops the
// layout-1 tables, after which every record answers once.
func TestOldLayoutRefusedThenBackfillRebuilds(t *testing.T) {
	e := ingesttest.New(t)
	r := runner(e)
	ctx := context.Background()
	h := now.Add(-26 * time.Hour).Truncate(time.Hour)
	for i, v := range []string{"vault1", "vault2"} {
		e.Append(ingesttest.BlobName(v, h), true, ingesttest.Records(v, h, i*100, 20))
	}
	if _, err := r.Backfill(ctx, BackfillOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	toLayout1(t, e)

	q := &query.Querier{Tables: e.Tables}
	if err := q.CheckLayout(ctx); !errors.Is(err, query.ErrOldLayout) || !strings.Contains(err.Error(), "handler backfill") {
		t.Fatalf("CheckLayout: %v, want ErrOldLayout naming handler backfill", err)
	}
	win := fmt.Sprintf("&from=%s&to=%s", h.Format(time.RFC3339), h.Add(time.Hour).Format(time.RFC3339))
	if _, err := events(t, q, "vault=vault1"+win); !errors.Is(err, query.ErrOldLayout) {
		t.Fatalf("events of layout-1 rows: %v, want ErrOldLayout", err)
	}
	if old, err := e.Tables.LegacyRows(ctx); err != nil || !old {
		t.Fatalf("LegacyRows %v %v, want true", old, err)
	}
	if old, err := ingest.OldLayoutBlobs(ctx, e.Tables); err != nil || len(old) != 2 {
		t.Fatalf("old-layout blobs %v %v, want 2", old, err)
	}

	rep, err := r.Backfill(ctx, BackfillOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 40 || rep.OldLayout != 0 || rep.LegacyDropped != 1 {
		t.Fatalf("rebuild: %+v, want 40 records read again, none left in layout 1, ByCaller dropped", rep)
	}
	q = &query.Querier{Tables: e.Tables}
	if err := q.CheckLayout(ctx); err != nil {
		t.Fatalf("CheckLayout after backfill: %v", err)
	}
	exactlyOnce(t, e, 40)
	for _, sel := range []string{"vault=vault1", "vault=vault2", "caller=oid-1", "ip=10.0.1.1"} {
		ids, err := events(t, q, sel+win)
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		if len(ids) == 0 {
			t.Fatalf("%s: nothing after the rebuild", sel)
		}
	}
	ids, _ := events(t, q, "vault=vault1"+win)
	sq, err := query.ParseStats(url.Values{"vault": {"vault1"}, "from": {h.Format(time.RFC3339)}, "to": {h.Add(time.Hour).Format(time.RFC3339)}}, now, query.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := q.Stats(ctx, sq)
	if err != nil || st.Total != int64(len(ids)) || st.Total != 20 {
		t.Fatalf("stats after rebuild: %+v %v, want 20 as events (%d)", st, err, len(ids))
	}
	// A second backfill reads nothing.
	if rep, err := r.Backfill(ctx, BackfillOptions{}, nil); err != nil || rep.Records != 0 {
		t.Fatalf("second backfill: %+v %v", rep, err)
	}
}
