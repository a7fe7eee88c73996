package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// Checkpoint is how far one blob is indexed (a blob by its identity,
// parse.BlobID, so that the same path in two logs accounts has two): a row
// in the Blobs table,
// partitioned by the blob's vault and hour, beside the blob's counts. It is
// written only after the rows it covers, in one transaction with the counts
// and with If-Match on its previous version, so two instances racing on one
// blob can neither lose nor double a record.
type Checkpoint struct {
	Blob       string
	Offset     int64        // bytes indexed: the end of the last complete record
	Format     parse.Format // detected at offset 0, needed to resume
	Length     int64        // blob length when last read
	BlobETag   string       // blob ETag when last read
	CreatedOn  time.Time    // blob creation time: a new one means a new blob
	Records    int64        // records indexed in this lineage
	BadRecords int64        // records skipped as malformed
	TooOld     int64        // records older than the retention cutoff, not indexed
	Rejected   int64        // rows the service refused (skipped)
	Tries      int          // consecutive failed attempts
	LastError  string
	UpdatedAt  time.Time
	// Layout is the index row layout (index.Layout) the rows of this
	// lineage were written in: 1 for a checkpoint without it. A blob of an
	// older layout is read again from 0 (see reconcileLineage).
	Layout int

	Counts *index.Counts // aggregates of this lineage's records

	// staleCounts are counts rows of this lineage from before a re-read
	// from 0; the next commit deletes those it does not rewrite.
	staleCounts []string
	// touched are the hours whose counts the next commit writes; the
	// others are unchanged since the last commit.
	touched map[index.HourKey]bool

	exists bool
	etag   azcore.ETag
}

// SourceID is the lineage id used in the blob's row keys.
func (c *Checkpoint) SourceID() string {
	return index.SourceID(c.Blob, c.CreatedOn)
}

// BlobPartition is the Blobs-table partition of a blob: its vault and hour
// from the Azure Monitor path, so the checkpoints and counts of a vault's
// hours are one PartitionKey range. Other paths share one partition per
// path hash.
func BlobPartition(name string) string {
	if bp, ok := parse.ParseBlobPath(name); ok && !bp.Hour.IsZero() {
		return index.EncodeKeyPart(bp.Vault) + "|" + bp.Hour.UTC().Format(index.HourLayout)
	}
	return "~|" + index.BlobKey(name)
}

func checkpointRowKey(name string) string { return "c|" + index.BlobKey(name) }

// loadCheckpoint reads the checkpoint of name and its lineage's counts. A
// blob never seen returns an empty checkpoint (exists false) and no error.
func loadCheckpoint(ctx context.Context, t *index.Tables, name string) (*Checkpoint, error) {
	cp, err := ReadCheckpoint(ctx, t, name)
	if err != nil || !cp.exists {
		return cp, err
	}
	if err := loadCounts(ctx, t.Client(index.TableBlobs), cp); err != nil {
		return nil, err
	}
	return cp, nil
}

// countsFilter selects the counts rows of cp's lineage.
func countsFilter(cp *Checkpoint) string {
	prefix := index.CountsRowPrefix(cp.SourceID())
	// '|' + 1 is '}': every key with the prefix sorts below prefix[:-1]+"}".
	return fmt.Sprintf("PartitionKey eq %s and RowKey ge %s and RowKey lt %s",
		index.ODataString(BlobPartition(cp.Blob)), index.ODataString(prefix), index.ODataString(prefix[:len(prefix)-1]+"}"))
}

// countKeys lists the RowKeys of cp's lineage's counts rows.
func countKeys(ctx context.Context, t *index.Tables, cp *Checkpoint) ([]string, error) {
	client := t.Client(index.TableBlobs)
	pager := client.NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: to.Ptr(countsFilter(cp)), Select: to.Ptr("RowKey")})
	var keys []string
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("ingest: list counts of %q: %w", cp.Blob, azstore.Classify(err))
		}
		for _, e := range page.Entities {
			var k struct{ RowKey string }
			if err := json.Unmarshal(e, &k); err != nil {
				return nil, err
			}
			keys = append(keys, k.RowKey)
		}
	}
	return keys, nil
}

func loadCounts(ctx context.Context, client *aztables.Client, cp *Checkpoint) error {
	pager := client.NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: to.Ptr(countsFilter(cp))})
	cp.Counts = &index.Counts{}
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("ingest: read counts of %q: %w", cp.Blob, azstore.Classify(err))
		}
		for _, e := range page.Entities {
			var props map[string]any
			if err := json.Unmarshal(e, &props); err != nil {
				return fmt.Errorf("ingest: counts of %q are not readable: %w", cp.Blob, err)
			}
			if err := cp.Counts.AddRow(props); err != nil {
				return fmt.Errorf("ingest: counts of %q: %w", cp.Blob, err)
			}
		}
	}
	return nil
}

// errLostRace says another writer changed the checkpoint since it was read.
var errLostRace = errors.New("ingest: checkpoint changed by another writer")

// commit writes cp and its counts in one entity-group transaction, with
// If-Match on the version read (or insert-only for a first checkpoint). On
// success cp holds the new version. errLostRace means someone else wrote
// first: nothing of this commit was applied.
func commit(ctx context.Context, t *index.Tables, cp *Checkpoint) error {
	client := t.Client(index.TableBlobs)
	pk := BlobPartition(cp.Blob)
	rk := checkpointRowKey(cp.Blob)
	body, err := json.Marshal(newCheckpointRow(pk, rk, cp))
	if err != nil {
		return err
	}
	act := aztables.TransactionAction{ActionType: aztables.TransactionTypeAdd, Entity: body}
	if cp.exists {
		etag := cp.etag
		act = aztables.TransactionAction{ActionType: aztables.TransactionTypeUpdateReplace, Entity: body, IfMatch: &etag}
	}
	actions := []aztables.TransactionAction{act}
	rows, err := index.CountsEntities(index.TableBlobs, pk, cp.SourceID(), cp.Counts.Only(cp.touched))
	if err != nil {
		return err
	}
	size := len(body)
	written := map[string]bool{}
	for _, r := range rows {
		actions = append(actions, aztables.TransactionAction{ActionType: aztables.TransactionTypeInsertReplace, Entity: r.Body})
		written[r.RK] = true
		size += len(r.Body)
	}
	for _, rk := range cp.staleCounts {
		if !written[rk] {
			key, _ := json.Marshal(map[string]string{"PartitionKey": pk, "RowKey": rk})
			actions = append(actions, aztables.TransactionAction{ActionType: aztables.TransactionTypeDelete, Entity: key, IfMatch: to.Ptr(azcore.ETagAny)})
		}
	}
	// Counts are capped per hour (index.MaxKeysPerDim), so this holds
	// unless one chunk spans dozens of hours.
	if len(actions) > 100 || size > 3<<20 {
		return fmt.Errorf("ingest: counts of %q need %d rows and %d bytes, more than one transaction holds", cp.Blob, len(actions)-1, size)
	}
	_, txErr := client.SubmitTransaction(ctx, actions, nil)
	if txErr != nil {
		// A failed transaction comes back as a 202 whose inner answer the
		// SDK does not surface; whether we lost a race is read from the row.
		resp, err := client.GetEntity(ctx, pk, rk, nil)
		err = azstore.Classify(err)
		switch {
		case errors.Is(err, azstore.ErrTableNotFound):
			// Storage lost the Blobs table, and with it this checkpoint
			// and its counts: create it again and let the caller reload,
			// which finds no checkpoint and reads the blob from 0.
			if rerr := t.Recover(ctx); rerr != nil {
				return fmt.Errorf("ingest: write checkpoint of %q: %w", cp.Blob, rerr)
			}
			return errLostRace
		case err == nil && (!cp.exists || resp.ETag != cp.etag):
			return errLostRace
		case errors.Is(err, azstore.ErrNotFound) && cp.exists:
			return errLostRace
		}
		return fmt.Errorf("ingest: write checkpoint of %q: %w", cp.Blob, azstore.Classify(txErr))
	}
	resp, err := client.GetEntity(ctx, pk, rk, nil)
	if err = azstore.Classify(err); err != nil {
		if errors.Is(err, azstore.ErrTableNotFound) {
			// Dropped right after our commit: as above.
			if rerr := t.Recover(ctx); rerr != nil {
				return fmt.Errorf("ingest: re-read checkpoint of %q: %w", cp.Blob, rerr)
			}
			return errLostRace
		}
		return fmt.Errorf("ingest: re-read checkpoint of %q: %w", cp.Blob, err)
	}
	cp.exists, cp.etag = true, resp.ETag
	cp.staleCounts, cp.touched = nil, nil
	return nil
}

// checkpointRow is the stored shape of a Checkpoint.
type checkpointRow struct {
	PartitionKey string `json:"PartitionKey"`
	RowKey       string `json:"RowKey"`
	Kind         string `json:"Kind"`
	Blob         string `json:"Blob"`
	Offset       int64  `json:"Offset,string"`
	OffsetType   string `json:"Offset@odata.type,omitempty"`
	Format       string `json:"Format"`
	Length       int64  `json:"Length,string"`
	LengthType   string `json:"Length@odata.type,omitempty"`
	BlobETag     string `json:"BlobETag"`
	CreatedOn    string `json:"CreatedOn"`
	Records      int64  `json:"Records,string"`
	RecordsType  string `json:"Records@odata.type,omitempty"`
	BadRecords   int64  `json:"BadRecords,string"`
	BadType      string `json:"BadRecords@odata.type,omitempty"`
	TooOld       int64  `json:"TooOld,string"`
	TooOldType   string `json:"TooOld@odata.type,omitempty"`
	Rejected     int64  `json:"Rejected"`
	Tries        int    `json:"Tries"`
	LastError    string `json:"LastError"`
	UpdatedAt    string `json:"UpdatedAt"`
	Layout       int    `json:"Layout,omitempty"`
}

const edmInt64 = "Edm.Int64"

func newCheckpointRow(pk, rk string, cp *Checkpoint) checkpointRow {
	errText := cp.LastError
	if len(errText) > 4000 {
		errText = errText[:4000]
	}
	return checkpointRow{
		PartitionKey: pk, RowKey: rk, Kind: "checkpoint", Blob: cp.Blob,
		Offset: cp.Offset, OffsetType: edmInt64,
		Format: cp.Format.String(),
		Length: cp.Length, LengthType: edmInt64,
		BlobETag:  cp.BlobETag,
		CreatedOn: cp.CreatedOn.UTC().Format(time.RFC3339Nano),
		Records:   cp.Records, RecordsType: edmInt64,
		BadRecords: cp.BadRecords, BadType: edmInt64,
		TooOld: cp.TooOld, TooOldType: edmInt64,
		Rejected:  cp.Rejected,
		Tries:     cp.Tries,
		LastError: errText,
		UpdatedAt: time.Now().UTC().Format(time.RFC3339Nano),
		Layout:    index.Layout,
	}
}

func (r checkpointRow) into(cp *Checkpoint) {
	cp.Blob = r.Blob
	cp.Offset = r.Offset
	cp.Format = formatOf(r.Format)
	cp.Length = r.Length
	cp.BlobETag = r.BlobETag
	cp.CreatedOn, _ = time.Parse(time.RFC3339Nano, r.CreatedOn)
	cp.Records = r.Records
	cp.BadRecords = r.BadRecords
	cp.TooOld = r.TooOld
	cp.Rejected = r.Rejected
	cp.Tries = r.Tries
	cp.LastError = r.LastError
	cp.UpdatedAt, _ = time.Parse(time.RFC3339Nano, r.UpdatedAt)
	cp.Layout = max(r.Layout, 1)
}

func formatOf(s string) parse.Format {
	for _, f := range []parse.Format{parse.FormatJSONLines, parse.FormatDocument} {
		if f.String() == s {
			return f
		}
	}
	return parse.FormatUnknown
}

// The vault registry: one row per resourceId=…/VAULTS/<NAME>/ prefix ever
// indexed, in its own partition of the Blobs table, so that a timer run can
// list the recent hours of the known vaults instead of the whole container.
const registryPartition = "~vaults"

// VaultPrefix is the part of an Azure Monitor blob path that names the
// vault, up to and including the "/" before "y="; ok is false for a blob
// of another shape.
func VaultPrefix(blob string) (string, bool) {
	if _, ok := parse.ParseBlobPath(blob); !ok {
		return "", false
	}
	i := strings.Index(blob, "/y=")
	if i < 0 {
		return "", false
	}
	return blob[:i+1], true
}

// registerVault records blob's vault prefix. Upsert: repeating it is free
// of effects.
func registerVault(ctx context.Context, t *index.Tables, blob string) error {
	prefix, ok := VaultPrefix(blob)
	if !ok {
		return nil
	}
	return RegisterVaultPrefix(ctx, t, prefix)
}

// RegisterVaultPrefix records a vault prefix ("resourceId=…/VAULTS/<NAME>/").
// Upsert: repeating it is free of effects.
func RegisterVaultPrefix(ctx context.Context, t *index.Tables, prefix string) error {
	if err := t.Ensure(ctx); err != nil {
		return err
	}
	row := map[string]string{
		"PartitionKey": registryPartition,
		"RowKey":       index.BlobKey(prefix),
		"Kind":         "vault",
		"Prefix":       prefix,
	}
	body, err := json.Marshal(row)
	if err != nil {
		return err
	}
	return t.Retry(ctx, nil, func() error {
		_, err := t.Client(index.TableBlobs).UpsertEntity(ctx, body, nil)
		if err != nil {
			return fmt.Errorf("ingest: register vault %q: %w", prefix, azstore.Classify(err))
		}
		return nil
	})
}

// KnownVaultPrefixes lists the vault prefixes of every blob ever indexed.
func KnownVaultPrefixes(ctx context.Context, t *index.Tables) ([]string, error) {
	filter := "PartitionKey eq " + index.ODataString(registryPartition)
	pager := t.Client(index.TableBlobs).NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &filter, Select: to.Ptr("Prefix")})
	var out []string
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			if errors.Is(azstore.Classify(err), azstore.ErrNotFound) {
				return nil, nil // no table yet: nothing indexed
			}
			return nil, fmt.Errorf("ingest: list known vaults: %w", azstore.Classify(err))
		}
		for _, e := range page.Entities {
			var row struct{ Prefix string }
			if err := json.Unmarshal(e, &row); err == nil && row.Prefix != "" {
				out = append(out, row.Prefix)
			}
		}
	}
	return out, nil
}

// Exists reports whether the checkpoint was read from the table.
func (c *Checkpoint) Exists() bool { return c.exists }

// ReadCheckpoint reads the checkpoint row of name without its counts: the
// cheap look a timer run takes before deciding to ingest. A blob never seen
// returns a checkpoint with Exists false.
func ReadCheckpoint(ctx context.Context, t *index.Tables, name string) (*Checkpoint, error) {
	cp := &Checkpoint{Blob: name, Counts: &index.Counts{}}
	resp, err := t.Client(index.TableBlobs).GetEntity(ctx, BlobPartition(name), checkpointRowKey(name), nil)
	if err = azstore.Classify(err); err != nil {
		if errors.Is(err, azstore.ErrNotFound) {
			return cp, nil
		}
		return nil, fmt.Errorf("ingest: read checkpoint of %q: %w", name, err)
	}
	var row checkpointRow
	if err := json.Unmarshal(resp.Value, &row); err != nil {
		return nil, fmt.Errorf("ingest: checkpoint of %q is not readable: %w", name, err)
	}
	row.into(cp)
	cp.exists, cp.etag = true, resp.ETag
	return cp, nil
}

// RecordFailure counts one more failed attempt at blob name and keeps the
// error, so that a blob that keeps failing can be parked until it changes,
// and lists the blob as unfinished, so that CatchUp tries it again
// whatever its hour. It touches only Tries, LastError and BlobETag, with
// If-Match: when another writer moved the checkpoint meanwhile, nothing is
// written and the returned tries is 0.
func RecordFailure(ctx context.Context, t *index.Tables, name string, info BlobInfo, cause error) (tries int, err error) {
	err = t.Retry(ctx, nil, func() error {
		if err := MarkUnfinished(ctx, t, name, "failed: "+cause.Error()); err != nil {
			return err
		}
		tries, err = recordFailure(ctx, t, name, info, cause)
		return err
	})
	return tries, err
}

func recordFailure(ctx context.Context, t *index.Tables, name string, info BlobInfo, cause error) (tries int, err error) {
	cp, err := ReadCheckpoint(ctx, t, name)
	if err != nil {
		return 0, err
	}
	client := t.Client(index.TableBlobs)
	// A blob never checkpointed keeps no creation time here: a failure
	// does not define its lineage. The trigger's metadata can be stale (a
	// blob re-created since), and a lineage newer than the blob's would be
	// refused by every later ingest as going back in time; the next
	// ingest takes the lineage from the blob itself.
	cp.Tries++
	cp.LastError = cause.Error()
	cp.BlobETag = info.ETag
	body, err := json.Marshal(newCheckpointRow(BlobPartition(name), checkpointRowKey(name), cp))
	if err != nil {
		return 0, err
	}
	if cp.exists {
		etag := cp.etag
		_, err = client.UpdateEntity(ctx, body, &aztables.UpdateEntityOptions{IfMatch: &etag, UpdateMode: aztables.UpdateModeReplace})
	} else {
		_, err = client.AddEntity(ctx, body, nil)
	}
	if err = azstore.Classify(err); err != nil {
		if errors.Is(err, azstore.ErrConflict) || errors.Is(err, azstore.ErrExists) {
			return 0, nil
		}
		return 0, fmt.Errorf("ingest: record failure of %q: %w", name, err)
	}
	return cp.Tries, nil
}

// ListCheckpoints calls fn for every checkpoint in the Blobs partitions of
// one vault prefix from hour `from` to hour `to` inclusive (blob hours).
func ListCheckpoints(ctx context.Context, t *index.Tables, vault string, from, to time.Time, fn func(*Checkpoint) error) error {
	lo := index.EncodeKeyPart(vault) + "|" + from.UTC().Format(index.HourLayout)
	hi := index.EncodeKeyPart(vault) + "|" + to.UTC().Format(index.HourLayout)
	filter := fmt.Sprintf("PartitionKey ge %s and PartitionKey le %s and RowKey ge 'c|' and RowKey lt 'c}'", index.ODataString(lo), index.ODataString(hi))
	pager := t.Client(index.TableBlobs).NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &filter})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			if errors.Is(azstore.Classify(err), azstore.ErrNotFound) {
				return nil
			}
			return fmt.Errorf("ingest: list checkpoints: %w", azstore.Classify(err))
		}
		for _, e := range page.Entities {
			var row checkpointRow
			if err := json.Unmarshal(e, &row); err != nil {
				return fmt.Errorf("ingest: unreadable checkpoint: %w", err)
			}
			cp := &Checkpoint{Counts: &index.Counts{}, exists: true}
			row.into(cp)
			if err := fn(cp); err != nil {
				return err
			}
		}
	}
	return nil
}

// OldLayoutBlobs lists the blobs whose checkpoint says their rows are of
// an older layout than index.Layout (backfill, or the next read of each,
// rebuilds them). It reads every checkpoint row: a scan of the Blobs
// table's checkpoints, for backfill and status.
func OldLayoutBlobs(ctx context.Context, t *index.Tables) ([]string, error) {
	filter := "Kind eq 'checkpoint'"
	pager := t.Client(index.TableBlobs).NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &filter, Select: to.Ptr("Blob,Layout")})
	var out []string
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			err = azstore.Classify(err)
			if errors.Is(err, azstore.ErrNotFound) {
				return nil, nil
			}
			return nil, fmt.Errorf("ingest: list checkpoints: %w", err)
		}
		for _, e := range page.Entities {
			var r struct {
				Blob   string
				Layout *int
			}
			if err := json.Unmarshal(e, &r); err != nil {
				return nil, err
			}
			if r.Layout == nil || *r.Layout < index.Layout {
				out = append(out, r.Blob)
			}
		}
	}
	return out, nil
}
