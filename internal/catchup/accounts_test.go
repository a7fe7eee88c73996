package catchup

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// CatchUp covers every logs account: it discovers each account's vaults,
// follows appends in both, reports per account, and an account that
// cannot be listed leaves the others indexed.
func TestCatchUpFollowsEveryAccount(t *testing.T) {
	weu := ingesttest.New(t)
	weu.Ingester.FirstAccount = "logsweu"
	eus := weu.Account("logseus")
	r := runner(weu)
	r.Regions = map[string]string{"logsweu": "westeurope", "logseus": "eastus"}
	h := now.Truncate(time.Hour)
	a, b := ingesttest.BlobName("kvweu", now), ingesttest.BlobName("kveus", now)
	// No trigger ever said anything: discovery finds both vaults.
	weu.Append(a, true, ingesttest.Records("kvweu", h, 0, 10))
	eus.Append(b, true, ingesttest.Records("kveus", h, 1000, 10))
	rep := run(t, r)
	if rep.Records != 20 || rep.Vaults != 2 || len(rep.Accounts) != 2 {
		t.Fatalf("first run: %+v", rep)
	}
	for i, want := range []AccountReport{{Account: "logsweu", Region: "westeurope", Vaults: 1, Listed: 1}, {Account: "logseus", Region: "eastus", Vaults: 1, Listed: 1}} {
		if got := rep.Accounts[i]; got.Account != want.Account || got.Region != want.Region || got.Vaults != want.Vaults || got.Listed != want.Listed || got.Error != "" {
			t.Errorf("account %d: %+v, want %+v", i, got, want)
		}
	}
	// Appends in both, cut mid-record in one.
	weu.Append(a, false, ingesttest.Records("kvweu", h, 10, 5))
	more := ingesttest.Records("kveus", h, 1010, 5)
	eus.Append(b, false, more[:len(more)-20])
	run(t, r)
	eus.Append(b, false, more[len(more)-20:])
	if rep := run(t, r); rep.Records != 1 {
		t.Fatalf("third run indexed %d records, want the one completed", rep.Records)
	}
	exactlyOnce(t, weu, 30)

	st, err := r.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Accounts) != 2 || st.Accounts[0].Blobs != 1 || st.Accounts[1].Blobs != 1 || st.Accounts[0].LagBytes+st.Accounts[1].LagBytes != 0 {
		t.Fatalf("status %+v", st.Accounts)
	}
	for _, bs := range st.Blobs {
		want := map[string]string{a: "logsweu", b: "logseus"}[bs.Blob]
		if bs.Account != want || bs.Region != r.Regions[want] || strings.HasPrefix(bs.Blob, "@") {
			t.Errorf("blob status %+v", bs)
		}
	}

	// One account's container gone (a deleted account, a missing role):
	// reported, and the other account is still followed.
	if _, err := eus.Container.Delete(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	weu.Append(a, false, ingesttest.Records("kvweu", h, 20, 3))
	rep, err = r.Run(context.Background(), time.Time{})
	if err != nil {
		t.Fatalf("Run with one account failing: %v", err)
	}
	if rep.Records != 3 || rep.Accounts[1].Error == "" || rep.Accounts[0].Error != "" || len(rep.Errors) == 0 {
		t.Fatalf("run with one account failing: %+v", rep)
	}
	exactlyOnce(t, weu, 33)
}

// Backfill lists every account, or the one asked for.
func TestBackfillEveryAccount(t *testing.T) {
	one := ingesttest.New(t)
	one.Ingester.FirstAccount = "logsone"
	two := one.Account("logstwo")
	r := runner(one)
	old := now.AddDate(0, 0, -5)
	// The same path in both accounts: two blobs.
	name := ingesttest.BlobName("kvmoved", old)
	one.Append(name, true, ingesttest.Records("kvmoved", old.Truncate(time.Hour), 0, 10))
	two.Append(name, true, ingesttest.Records("kvmoved", old.Truncate(time.Hour), 100, 7))
	rep, err := r.Backfill(context.Background(), BackfillOptions{Account: "logstwo"}, nil)
	if err != nil || rep.Listed != 1 || rep.Records != 7 {
		t.Fatalf("backfill of logstwo: %+v, %v", rep, err)
	}
	rep, err = r.Backfill(context.Background(), BackfillOptions{}, nil)
	if err != nil || rep.Listed != 2 || rep.Records != 10 {
		t.Fatalf("backfill of all: %+v, %v", rep, err)
	}
	exactlyOnce(t, one, 17)
	if _, err := r.Backfill(context.Background(), BackfillOptions{Account: "nosuch"}, nil); err == nil {
		t.Error("backfill of an unknown account: no error")
	}
	// The list of blobs with work left names blobs by identity: CatchUp
	// reads the second account's copy of the old hour, not the first's.
	two.Append(name, false, ingesttest.Records("kvmoved", old.Truncate(time.Hour), 107, 4))
	one.Append(name, false, ingesttest.Records("kvmoved", old.Truncate(time.Hour), 10, 2)) // not listed: stays
	id, _ := parse.BlobID("logstwo", name)
	if err := ingest.MarkUnfinished(context.Background(), one.Tables, id, "test"); err != nil {
		t.Fatal(err)
	}
	if rep := run(t, r); rep.Records != 4 {
		t.Fatalf("CatchUp of the unfinished blob: %+v, want its 4 new records", rep)
	}
	exactlyOnce(t, one, 21)
	if us, err := ingest.ListUnfinished(context.Background(), one.Tables); err != nil || len(us) != 0 {
		t.Fatalf("unfinished after the run: %v, %v", us, err)
	}
}
