package catchup

import (
	"context"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
)

// Storage that loses every index table (an emulator killed before it saved
// them) does not break the timer until a restart: the next run registers
// the vault again, re-creates the tables and indexes the blob exactly once.
func TestCatchUpAfterAllTablesLost(t *testing.T) {
	e := ingesttest.New(t)
	r := runner(e)
	name := ingesttest.BlobName("vault1", now)
	e.Append(name, true, ingesttest.Records("vault1", now.Truncate(time.Hour), 0, 40))
	if rep := run(t, r); rep.Records != 40 {
		t.Fatalf("first run: %+v", rep)
	}
	for _, short := range index.AllTables {
		if _, err := e.Tables.Client(short).Delete(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	e.Append(name, false, ingesttest.Records("vault1", now.Truncate(time.Hour), 40, 10))

	rep := run(t, r) // same Runner, Ingester and Tables: nothing restarted
	if rep.Failed != 0 || rep.Records != 50 {
		t.Fatalf("run after the loss: %+v", rep)
	}
	exactlyOnce(t, e, 50)
	st, err := r.Status(context.Background())
	if err != nil || len(st.Blobs) != 1 || st.Blobs[0].Offset != st.Blobs[0].Length {
		t.Fatalf("status after the loss: %+v, %v", st, err)
	}
}
