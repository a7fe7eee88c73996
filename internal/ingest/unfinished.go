package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/index"
)

// The list of blobs with work left: one row per blob in its own partition
// of the Blobs table, written when an ingest stops on its time budget or
// fails, so that CatchUp goes on with the blob whatever its hour (its own
// listing covers only the recent hours). CatchUp reads the partition on
// every tick, one query however large the index, and deletes a row once
// the blob is read to its end.
const unfinishedPartition = "~unfinished"

// Unfinished is a blob with work left, as listed.
type Unfinished struct {
	Blob      string
	Reason    string
	UpdatedAt time.Time
	etag      azcore.ETag
}

type unfinishedRow struct {
	PartitionKey string `json:"PartitionKey"`
	RowKey       string `json:"RowKey"`
	Kind         string `json:"Kind"`
	Blob         string `json:"Blob"`
	Reason       string `json:"Reason"`
	UpdatedAt    string `json:"UpdatedAt"`
}

// MarkUnfinished records that blob has work left (reason says why).
// Upsert: repeating it, from any instance, leaves one row; each write gives
// the row a new ETag, so a ClearUnfinished based on an older listing leaves
// it in place.
func MarkUnfinished(ctx context.Context, t *index.Tables, blob, reason string) error {
	if len(reason) > 1000 {
		reason = reason[:1000]
	}
	body, err := json.Marshal(unfinishedRow{
		PartitionKey: unfinishedPartition, RowKey: index.BlobKey(blob), Kind: "unfinished",
		Blob: blob, Reason: reason, UpdatedAt: time.Now().UTC().Format(time.RFC3339Nano),
	})
	if err != nil {
		return err
	}
	if _, err := t.Client(index.TableBlobs).UpsertEntity(ctx, body, &aztables.UpsertEntityOptions{UpdateMode: aztables.UpdateModeReplace}); err != nil {
		return fmt.Errorf("ingest: mark %q unfinished: %w", blob, azstore.Classify(err))
	}
	return nil
}

// ListUnfinished lists the blobs with work left. No table yet is an empty
// list.
func ListUnfinished(ctx context.Context, t *index.Tables) ([]Unfinished, error) {
	filter := "PartitionKey eq " + index.ODataString(unfinishedPartition)
	pager := t.Client(index.TableBlobs).NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &filter})
	var out []Unfinished
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			if errors.Is(azstore.Classify(err), azstore.ErrNotFound) {
				return nil, nil
			}
			return nil, fmt.Errorf("ingest: list unfinished blobs: %w", azstore.Classify(err))
		}
		for _, e := range page.Entities {
			var row struct {
				unfinishedRow
				ETag string `json:"odata.etag"`
			}
			if err := json.Unmarshal(e, &row); err != nil || row.Blob == "" {
				continue
			}
			u := Unfinished{Blob: row.Blob, Reason: row.Reason, etag: azcore.ETag(row.ETag)}
			u.UpdatedAt, _ = time.Parse(time.RFC3339Nano, row.UpdatedAt)
			out = append(out, u)
		}
	}
	return out, nil
}

// ClearUnfinished deletes u's row, unless it was written again since it was
// listed (a newer MarkUnfinished stands) or is gone already.
func ClearUnfinished(ctx context.Context, t *index.Tables, u Unfinished) error {
	opts := &aztables.DeleteEntityOptions{IfMatch: &u.etag}
	if u.etag == "" {
		return nil // never listed: nothing says the row is ours to delete
	}
	_, err := t.Client(index.TableBlobs).DeleteEntity(ctx, unfinishedPartition, index.BlobKey(u.Blob), opts)
	if err = azstore.Classify(err); err != nil && !errors.Is(err, azstore.ErrNotFound) && !errors.Is(err, azstore.ErrConflict) {
		return fmt.Errorf("ingest: clear unfinished %q: %w", u.Blob, err)
	}
	return nil
}
