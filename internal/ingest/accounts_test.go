package ingest_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// The same blob path in two logs accounts (a vault whose diagnostic
// setting moved to another region's account) is two blobs: two
// checkpoints, two lineages, each record indexed once, and each account's
// records say which account they came from.
func TestSamePathInTwoAccountsIsTwoSources(t *testing.T) {
	first := ingesttest.New(t)
	first.Ingester.FirstAccount = "logsone"
	second := first.Account("logstwo")
	name := ingesttest.BlobName("movedvault", hour)
	first.Append(name, true, ingesttest.Records("movedvault", hour, 0, 30))
	second.Append(name, true, ingesttest.Records("movedvault", hour.Add(10*time.Minute), 100, 20))

	id2, ok := parse.BlobID("logstwo", name)
	if !ok {
		t.Fatal("no identity")
	}
	for range 2 { // a second delivery of each adds nothing
		if res := first.Ingest(name); res.Skipped != "" && res.Skipped != "up to date" {
			t.Fatalf("first account: %+v", res)
		}
		if res := first.Ingest(id2); res.Skipped != "" && res.Skipped != "up to date" {
			t.Fatalf("second account: %+v", res)
		}
	}
	got := first.CountEvents()
	if len(got) != 50 {
		t.Fatalf("%d records indexed, want 50 (30 + 20)", len(got))
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("record %s indexed %d times", id, n)
		}
	}
	cp1, err := ingest.ReadCheckpoint(context.Background(), first.Tables, name)
	if err != nil {
		t.Fatal(err)
	}
	cp2, err := ingest.ReadCheckpoint(context.Background(), first.Tables, id2)
	if err != nil {
		t.Fatal(err)
	}
	if cp1.Records != 30 || cp2.Records != 20 || cp1.SourceID() == cp2.SourceID() {
		t.Errorf("checkpoints: %d records (%s), %d records (%s)", cp1.Records, cp1.SourceID(), cp2.Records, cp2.SourceID())
	}
	// Each event row names its account: the first's by the Reader's
	// default, the other's by its blob identity.
	for _, r := range first.Rows(index.TableEvents) {
		blob, _ := r[index.PropBlob].(string)
		acct, path := parse.SplitBlobID(blob)
		id, _ := r[index.PropCorrelationID].(string)
		wantSecond := id >= "c-000100"
		if path != name || (acct == "logstwo") != wantSecond {
			t.Errorf("record %s: blob %q", id, blob)
		}
	}
	// Both vault prefixes are registered, one per account.
	prefixes, err := ingest.KnownVaultPrefixes(context.Background(), first.Tables)
	if err != nil {
		t.Fatal(err)
	}
	qualified := 0
	for _, p := range prefixes {
		if strings.HasPrefix(p, "@logstwo/resourceId=") {
			qualified++
		}
	}
	if len(prefixes) != 2 || qualified != 1 {
		t.Errorf("registry %q: want the vault's prefix once bare, once qualified by logstwo", prefixes)
	}
}

// A blob identity naming an account the settings do not list, or naming
// the first account by name (a second identity of its blobs), is not read.
func TestUnknownAccountIsNotRead(t *testing.T) {
	e := ingesttest.New(t)
	e.Ingester.FirstAccount = "logsone"
	name := ingesttest.BlobName("vault1", hour)
	e.Append(name, true, ingesttest.Records("vault1", hour, 0, 3))
	for _, id := range []string{"@logsgone/" + name, "@logsone/" + name} {
		_, err := e.Ingester.IngestBlob(context.Background(), id)
		if !errors.Is(err, ingest.ErrUnknownAccount) || azstore.IsTransient(err) {
			t.Errorf("%s: %v, want ErrUnknownAccount (not transient)", id, err)
		}
	}
	if n := len(e.CountEvents()); n != 0 {
		t.Errorf("%d records indexed", n)
	}
}

// The index records which account's blobs it identifies by bare path; an
// index written before kvaudit read several accounts records none, and
// takes the first account it is read with. Another first account is
// refused (transient: the host retries, CatchUp stops) until the setting
// names the recorded one again.
func TestFirstAccountRecordedAndChecked(t *testing.T) {
	e := ingesttest.New(t)
	name := ingesttest.BlobName("vault1", hour)
	// Written as before (no first account recorded).
	e.Append(name, true, ingesttest.Records("vault1", hour, 0, 10))
	e.Ingest(name)

	ctx := context.Background()
	if err := ingest.CheckFirstAccount(ctx, e.Tables, "logsone"); err != nil {
		t.Fatal(err)
	}
	if err := ingest.CheckFirstAccount(ctx, e.Tables, "logsone"); err != nil {
		t.Fatalf("second check: %v", err)
	}
	err := ingest.CheckFirstAccount(ctx, e.Tables, "logsother")
	if !errors.Is(err, ingest.ErrFirstAccountChanged) || !azstore.IsTransient(err) || !strings.Contains(err.Error(), `"logsone"`) {
		t.Fatalf("another first account: %v", err)
	}
	// An Ingester with the wrong first account indexes nothing.
	other := *e.Ingester
	other.FirstAccount = "logsother"
	e.Append(name, false, ingesttest.Records("vault1", hour, 10, 5))
	if _, err := other.IngestBlob(ctx, name); !errors.Is(err, ingest.ErrFirstAccountChanged) {
		t.Fatalf("ingest with another first account: %v", err)
	}
	if n := len(e.CountEvents()); n != 10 {
		t.Fatalf("%d records indexed, want the 10 of before", n)
	}
	// The right one goes on where the old index stopped: once each.
	right := *e.Ingester
	right.FirstAccount = "logsone"
	if _, err := right.IngestBlob(ctx, name); err != nil {
		t.Fatal(err)
	}
	got := e.CountEvents()
	if len(got) != 15 {
		t.Fatalf("%d records, want 15", len(got))
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("record %s indexed %d times", id, n)
		}
	}
}
