package ingest_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
)

func TestMain(m *testing.M) { os.Exit(azuritetest.Main(m)) }

// checkpoint reads name's checkpoint with its counts; the blob must have one.
func checkpoint(e *ingesttest.Env, name string) *ingest.Checkpoint {
	e.T.Helper()
	cp, err := ingest.LoadCheckpoint(context.Background(), e.Tables, name)
	if err != nil {
		e.T.Fatal(err)
	}
	if !cp.Exists() {
		e.T.Fatalf("no checkpoint for %s", name)
	}
	return cp
}

// allCounts is the sum of the Total of every counts row of the Blobs
// table: the blobs' own counts and the rows of records counted apart.
func allCounts(e *ingesttest.Env) int64 {
	e.T.Helper()
	var n int64
	for _, r := range e.Rows(index.TableBlobs) {
		if rk, _ := r["RowKey"].(string); strings.HasPrefix(rk, "a|") {
			c := &index.Counts{}
			if err := c.AddRow(r); err != nil {
				e.T.Fatal(err)
			}
			n += total(c)
		}
	}
	return n
}

// total is the sum of every hour's Total in c.
func total(c *index.Counts) int64 {
	var n int64
	for _, h := range c.Hours {
		n += h.Total
	}
	return n
}
