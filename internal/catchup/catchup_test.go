package catchup

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
)

func TestMain(m *testing.M) { os.Exit(azuritetest.Main(m)) }

// now is the clock of these tests: half past ten, so the blobs of 08, 09
// and 10 o'clock are "recent".
var now = time.Date(2026, 11, 21, 10, 30, 0, 0, time.UTC)

func runner(e *ingesttest.Env) *Runner {
	return &Runner{Tables: e.Tables, Ingester: e.Ingester, Log: e.Log,
		Hours: 3, MaxTries: 5, RetentionDays: 90, Now: func() time.Time { return now }}
}

func run(t *testing.T, r *Runner) Report {
	t.Helper()
	rep, err := r.Run(context.Background(), time.Time{})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rep
}

// exactlyOnce fails unless every correlation id c-000000…c-(n-1) is in the
// Events table exactly once.
func exactlyOnce(t *testing.T, e *ingesttest.Env, n int) {
	t.Helper()
	got := e.CountEvents()
	if len(got) != n {
		t.Errorf("%d distinct records indexed, want %d", len(got), n)
	}
	for id, c := range got {
		if c != 1 {
			t.Errorf("record %s indexed %d times", id, c)
		}
	}
}

// cuts splits b into parts at fixed fractions, so that most cuts fall
// inside a record, as Append Block does.
func cuts(b []byte, parts int) [][]byte {
	var out [][]byte
	for i := 0; i < parts; i++ {
		lo, hi := len(b)*i/parts+i*7%13, len(b)*(i+1)/parts+(i+1)*7%13
		if i == 0 {
			lo = 0
		}
		if i == parts-1 {
			hi = len(b)
		}
		out = append(out, b[lo:hi])
	}
	return out
}

func TestOnlyCatchUpFollowsAppendsThatCutRecords(t *testing.T) {
	e := ingesttest.New(t)
	r := runner(e)
	name := ingesttest.BlobName("vault1", now)
	const n = 60
	data := ingesttest.Records("vault1", now.Truncate(time.Hour), 0, n)

	e.Append(name, true) // created empty: all Event Grid ever says
	if rep := run(t, r); rep.Vaults != 1 || rep.Listed != 1 || rep.Records != 0 {
		t.Fatalf("empty blob run: %+v", rep)
	}
	var total int64
	for i, part := range cuts(data, 5) {
		e.Append(name, false, part)
		rep := run(t, r)
		total += rep.Records
		if i < 4 && bytes.HasSuffix(part, []byte("\n")) {
			t.Logf("append %d ends on a record boundary", i)
		}
	}
	if total != n {
		t.Errorf("runs indexed %d records, want %d", total, n)
	}
	exactlyOnce(t, e, n)
	// The previous hour's blob can still grow after its hour.
	prev := ingesttest.BlobName("vault1", now.Add(-time.Hour))
	e.Append(prev, true, ingesttest.Records("vault1", now.Add(-time.Hour), n, 5))
	if rep := run(t, r); rep.Records != 5 {
		t.Fatalf("previous hour: %+v", rep)
	}
	// Nothing new: the run reads nothing.
	if rep := run(t, r); rep.Records != 0 || rep.Indexed != 0 {
		t.Fatalf("idle run: %+v", rep)
	}
	exactlyOnce(t, e, n+5)
}

func TestCatchUpAndBlobTriggerRacing(t *testing.T) {
	e := ingesttest.New(t)
	r := runner(e)
	name := ingesttest.BlobName("vault1", now)
	const n = 200
	data := ingesttest.Records("vault1", now.Truncate(time.Hour), 0, n)
	e.Append(name, true)
	e.Ingester.ChunkBytes = 8 << 10
	for _, part := range cuts(data, 4) {
		e.Append(name, false, part)
		var wg sync.WaitGroup
		errs := make(chan error, 3)
		for i := 0; i < 3; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				if i == 0 {
					_, err = e.Ingester.IngestBlob(context.Background(), name) // the trigger
				} else {
					_, err = r.Run(context.Background(), time.Time{}) // two timer runs
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	exactlyOnce(t, e, n)
	cp, err := ingest.ReadCheckpoint(context.Background(), e.Tables, name)
	if err != nil || cp.Records != n {
		t.Fatalf("checkpoint records %d (%v), want %d", cp.Records, err, n)
	}
}

func TestCheckpointLossAndBadOffsetReadAgainOnce(t *testing.T) {
	for _, tt := range []struct {
		name   string
		break_ func(t *testing.T, e *ingesttest.Env, blob string)
	}{
		{"checkpoint deleted", func(t *testing.T, e *ingesttest.Env, blob string) {
			_, err := e.Tables.Client(index.TableBlobs).DeleteEntity(context.Background(), ingest.BlobPartition(blob), "c|"+index.BlobKey(blob), nil)
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"offset past the end (416)", func(t *testing.T, e *ingesttest.Env, blob string) {
			client := e.Tables.Client(index.TableBlobs)
			resp, err := client.GetEntity(context.Background(), ingest.BlobPartition(blob), "c|"+index.BlobKey(blob), nil)
			if err != nil {
				t.Fatal(err)
			}
			var row map[string]any
			_ = json.Unmarshal(resp.Value, &row)
			row["Offset"], row["Length"], row["BlobETag"] = "99999999", "99999999", "\"other\""
			body, _ := json.Marshal(row)
			if _, err := client.UpsertEntity(context.Background(), body, nil); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := ingesttest.New(t)
			r := runner(e)
			name := ingesttest.BlobName("vault1", now)
			e.Append(name, true, ingesttest.Records("vault1", now.Truncate(time.Hour), 0, 30))
			run(t, r)
			tt.break_(t, e, name)
			if rep := run(t, r); rep.Records != 30 || rep.Failed != 0 {
				t.Fatalf("after %s: %+v", tt.name, rep)
			}
			exactlyOnce(t, e, 30)
			cp, err := ingest.ReadCheckpoint(context.Background(), e.Tables, name)
			if err != nil || cp.Records != 30 || cp.Offset != int64(len(ingesttest.Records("vault1", now.Truncate(time.Hour), 0, 30))) {
				t.Fatalf("checkpoint %+v %v", cp, err)
			}
		})
	}
}

func TestBudgetStopsAtACheckpointAndNextRunResumes(t *testing.T) {
	e := ingesttest.New(t)
	r := runner(e)
	e.Ingester.ChunkBytes = 4 << 10
	for h := 0; h < 3; h++ {
		name := ingesttest.BlobName("vault1", now.Add(-time.Duration(h)*time.Hour))
		e.Append(name, true, ingesttest.Records("vault1", now.Add(-time.Duration(h)*time.Hour).Truncate(time.Hour), h*100, 100))
	}
	// A budget already spent: the run stops at its first checkpoint.
	rep, err := r.Run(context.Background(), time.Now().Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Left == 0 {
		t.Fatalf("a spent budget left nothing for later: %+v", rep)
	}
	for i := 0; i < 10 && len(e.CountEvents()) < 300; i++ {
		if _, err := r.Run(context.Background(), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	exactlyOnce(t, e, 300)
}

func TestBackfillTwiceAndFilters(t *testing.T) {
	e := ingesttest.New(t)
	r := runner(e)
	old := now.AddDate(0, 0, -20)
	for d := 0; d < 3; d++ {
		h := old.AddDate(0, 0, d)
		e.Append(ingesttest.BlobName("vault1", h), true, ingesttest.Records("vault1", h.Truncate(time.Hour), d*10, 10))
		e.Append(ingesttest.BlobName("vault2", h), true, ingesttest.Records("vault2", h.Truncate(time.Hour), 1000+d*10, 10))
	}
	// Older than the retention window: never brought back.
	ancient := now.AddDate(0, 0, -200)
	e.Append(ingesttest.BlobName("vault1", ancient), true, ingesttest.Records("vault1", ancient, 5000, 3))

	var last Progress
	rep, err := r.Backfill(context.Background(), BackfillOptions{Vault: "VAULT1", Since: old.Truncate(24 * time.Hour), Until: old.Truncate(24*time.Hour).AddDate(0, 0, 2)}, func(p Progress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	if rep.Listed != 2 || rep.Records != 20 || last.Done != 2 || last.BytesDone != last.Bytes {
		t.Fatalf("filtered backfill: %+v, progress %+v", rep, last)
	}
	if _, err := r.Backfill(context.Background(), BackfillOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	rep, err = r.Backfill(context.Background(), BackfillOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 0 || rep.Listed != 6 {
		t.Fatalf("second full backfill: %+v, want nothing new of 6 blobs", rep)
	}
	if got := len(e.CountEvents()); got != 60 {
		t.Fatalf("%d records, want 60 (none of the ancient blob)", got)
	}
	exactlyOnce(t, e, 60)
}

func TestBackfillStoppedResumes(t *testing.T) {
	e := ingesttest.New(t)
	r := runner(e)
	for d := 0; d < 4; d++ {
		h := now.AddDate(0, 0, -d-1)
		e.Append(ingesttest.BlobName("vault1", h), true, ingesttest.Records("vault1", h, d*20, 20))
	}
	ctx, cancel := context.WithCancel(context.Background())
	_, err := r.Backfill(ctx, BackfillOptions{}, func(p Progress) {
		if p.Done == 2 {
			cancel() // Ctrl-C after two blobs
		}
	})
	if err == nil {
		t.Fatal("a cancelled backfill reported success")
	}
	rep, err := r.Backfill(context.Background(), BackfillOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 40 {
		t.Fatalf("resumed backfill indexed %d, want the 40 not yet indexed", rep.Records)
	}
	exactlyOnce(t, e, 80)
}

func TestRetentionRemovesOnlyOldDays(t *testing.T) {
	e := ingesttest.New(t)
	r := runner(e)
	r.RetentionDays = 30
	oldDay := now.AddDate(0, 0, -31)
	edge := now.AddDate(0, 0, -30).Truncate(24 * time.Hour) // first day kept
	for i, h := range []time.Time{oldDay, edge, now} {
		name := ingesttest.BlobName("vault1", h)
		e.Append(name, true, ingesttest.Records("vault1", h.Truncate(time.Hour), i*10, 10))
		if _, err := e.Ingester.IngestBlob(context.Background(), name); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := r.Retain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Deleted == 0 {
		t.Fatal("nothing deleted")
	}
	got := e.CountEvents()
	for i := 0; i < 30; i++ {
		id := "c-" + pad(i)
		want := 1
		if i < 10 {
			want = 0
		}
		if got[id] != want {
			t.Errorf("record %s: %d rows, want %d", id, got[id], want)
		}
	}
	for k := range e.Rows(index.TablePostings) {
		pk, _, _ := strings.Cut(k, "/")
		if _, day, _ := strings.Cut(pk, "|"); day < edge.Format(index.DayLayout) {
			t.Errorf("posting row %s of %s survived", k, day)
		}
	}
	for _, kind := range []string{index.KindCaller, index.KindIP, index.KindObject} {
		if n := len(e.Postings(kind)); n != 20 {
			t.Errorf("%d events in %s postings after retention, want the 20 kept", n, kind)
		}
	}
	// The old blob's checkpoint went with its day; the others stay.
	if cp, _ := ingest.ReadCheckpoint(context.Background(), e.Tables, ingesttest.BlobName("vault1", oldDay)); cp.Exists() {
		t.Error("old checkpoint survived")
	}
	if cp, _ := ingest.ReadCheckpoint(context.Background(), e.Tables, ingesttest.BlobName("vault1", edge)); !cp.Exists() {
		t.Error("edge-day checkpoint deleted")
	}
	again, err := r.Retain(context.Background())
	if err != nil || again.Deleted != 0 {
		t.Fatalf("second retention deleted %d (%v)", again.Deleted, err)
	}
}

func TestStatusShowsLagAndErrors(t *testing.T) {
	e := ingesttest.New(t)
	r := runner(e)
	name := ingesttest.BlobName("vault1", now)
	data := ingesttest.Records("vault1", now.Truncate(time.Hour), 0, 10)
	e.Append(name, true, data)
	run(t, r)
	e.Append(name, false, []byte(`{"time":"2026-11-21T10:40:00Z","cut`)) // a record cut mid-way
	rep, err := r.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st := rep.Blobs
	if len(st) != 1 || st[0].Offset != int64(len(data)) || st[0].Lag != 35 || st[0].Records != 10 {
		t.Fatalf("status %+v", st)
	}
	if len(rep.Accounts) != 1 || rep.Accounts[0].Blobs != 1 || rep.Accounts[0].LagBytes != 35 || rep.Accounts[0].Error != "" {
		t.Fatalf("account status %+v", rep.Accounts)
	}
	info := ingest.BlobInfo{Length: st[0].Length, CreatedOn: now}
	for i := 0; i < 5; i++ {
		if _, err := ingest.RecordFailure(context.Background(), e.Tables, name, info, errTest); err != nil {
			t.Fatal(err)
		}
	}
	rep, _ = r.Status(context.Background())
	if st := rep.Blobs; st[0].Tries != 5 || st[0].LastError != errTest.Error() {
		t.Fatalf("status after failures %+v", st[0])
	}
	if a := rep.Accounts[0]; a.Failing != 1 || a.Parked != 0 {
		t.Fatalf("account status after failures %+v", a)
	}
}

type testErr string

func (e testErr) Error() string { return string(e) }

var errTest = testErr("simulated failure")

func pad(i int) string {
	b := []byte("000000")
	for j := 5; j >= 0 && i > 0; j-- {
		b[j] = byte('0' + i%10)
		i /= 10
	}
	return string(b)
}

func TestAzuriteRestartedMidRunResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own persistent Azurite")
	}
	az, err := azuritetest.Start(azuritetest.Options{Location: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer az.Stop()
	e := ingesttest.NewIn(t, az)
	e.Ingester.ChunkBytes = 8 << 10
	r := runner(e)
	name := ingesttest.BlobName("vault1", now)
	const n = 600
	e.Append(name, true, ingesttest.Records("vault1", now.Truncate(time.Hour), 0, n))

	done := make(chan error, 1)
	go func() { _, err := r.Run(context.Background(), time.Time{}); done <- err }()
	// Restart as soon as the first checkpoint is down, i.e. mid-run.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		cp, err := ingest.ReadCheckpoint(context.Background(), e.Tables, name)
		if err == nil && cp.Offset > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := az.Restart(); err != nil {
		t.Fatal(err)
	}
	firstErr := <-done
	t.Logf("run across the restart ended with: %v", firstErr)
	// Whatever the interrupted run managed, the next runs finish the blob.
	for i := 0; i < 5 && len(e.CountEvents()) < n; i++ {
		if _, err := r.Run(context.Background(), time.Time{}); err != nil {
			t.Fatalf("run after restart: %v", err)
		}
	}
	exactlyOnce(t, e, n)
	cp, err := ingest.ReadCheckpoint(context.Background(), e.Tables, name)
	if err != nil || cp.Records != n {
		t.Fatalf("checkpoint records %d (%v), want %d", cp.Records, err, n)
	}
}

// An account that refuses access is not the blob's fault: the run stops
// with azstore.ErrAuth, naming the setting, and records no failure that
// would count toward parking the blob.
func TestRefusedAccessStopsTheRunAndParksNothing(t *testing.T) {
	az := azuritetest.Require(t)
	e := ingesttest.New(t)
	r := runner(e)
	name := ingesttest.BlobName("vault1", now)
	e.Append(name, true, ingesttest.Records("vault1", now.Truncate(time.Hour), 0, 10))
	run(t, r) // registers the vault
	e.Append(name, false, ingesttest.Records("vault1", now.Truncate(time.Hour), 10, 5))

	// Listing still works; reading the blob is refused (a key the account
	// does not have).
	wrongKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 64))
	bc, err := azstore.NewBlobClient(config.Account{Setting: config.SettingLogsStorage, Name: azuritetest.AccountName, Key: wrongKey, BlobURL: az.BlobURL})
	if err != nil {
		t.Fatal(err)
	}
	containerName := e.Container.URL()[strings.LastIndex(e.Container.URL(), "/")+1:]
	in := *e.Ingester
	in.Container = bc.ServiceClient().NewContainerClient(containerName)
	r.Ingester = &in

	_, err = r.Run(context.Background(), time.Time{})
	var ae *azstore.AuthError
	if !errors.As(err, &ae) || ae.Setting != config.SettingLogsStorage {
		t.Fatalf("Run: %v, want an azstore.AuthError for %s", err, config.SettingLogsStorage)
	}
	cp, err := ingest.ReadCheckpoint(context.Background(), e.Tables, name)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Tries != 0 || cp.LastError != "" {
		t.Errorf("a refused read was recorded against the blob: tries %d, %q", cp.Tries, cp.LastError)
	}
	exactlyOnce(t, e, 10)
}

// A blob of an old hour left unfinished by a budgeted ingest is finished
// by CatchUp even when two instances run at once, one chunk per run each:
// every record once, counts once, and the list of unfinished blobs empty
// at the end.
func TestUnfinishedOldBlobFinishedByRacingRuns(t *testing.T) {
	e := ingesttest.New(t)
	e.Ingester.ChunkBytes = 8 << 10
	hour := now.Truncate(time.Hour).Add(-6 * time.Hour) // not a recent hour
	name := ingesttest.BlobName("vault1", hour)
	const n = 120
	data := ingesttest.Records("vault1", hour, 0, n)
	e.Append(name, true, data)
	spent := time.Unix(1, 0) // a budget spent before it starts: one chunk a call

	res, err := e.Ingester.Ingest(context.Background(), name, ingest.Options{StopBy: spent})
	if err != nil || res.Skipped != ingest.SkippedBudget {
		t.Fatalf("budgeted ingest: %+v %v", res, err)
	}
	// Its hour is not among the recent ones: the list brings it to a run,
	// which without a budget finishes it.
	if rep := run(t, runner(e)); rep.Records != n-res.Records {
		t.Fatalf("run: %+v, want the %d records left", rep, n-res.Records)
	}
	// Again from the start, with two racing instances on a spent budget.
	e = ingesttest.New(t)
	e.Ingester.ChunkBytes = 8 << 10
	e.Append(name, true, data)
	if _, err := e.Ingester.Ingest(context.Background(), name, ingest.Options{StopBy: spent}); err != nil {
		t.Fatal(err)
	}
	offset := func() int64 {
		cp, err := ingest.ReadCheckpoint(context.Background(), e.Tables, name)
		if err != nil {
			t.Error(err)
			return -1
		}
		return cp.Offset
	}
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := runner(e)
			for i := 0; i < 100 && offset() < int64(len(data)); i++ {
				if _, err := r.Run(context.Background(), spent); err != nil {
					t.Errorf("Run: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := offset(); got != int64(len(data)) {
		t.Fatalf("checkpoint at %d of %d", got, len(data))
	}
	run(t, runner(e)) // a run after the end forgets the blob
	if left, err := ingest.ListUnfinished(context.Background(), e.Tables); err != nil || len(left) != 0 {
		t.Fatalf("unfinished after the end: %+v %v", left, err)
	}
	exactlyOnce(t, e, n)
	var counted int64
	for _, row := range e.Rows(index.TableBlobs) {
		if rk, _ := row["RowKey"].(string); len(rk) > 2 && rk[:2] == "a|" {
			c := &index.Counts{}
			if err := c.AddRow(row); err != nil {
				t.Fatal(err)
			}
			for _, h := range c.Hours {
				counted += h.Total
			}
		}
	}
	if counted != n {
		t.Fatalf("counts total %d, want %d", counted, n)
	}
}
