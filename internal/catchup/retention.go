package catchup

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
	"github.com/kvaudit/kvaudit/internal/ingest"
)

// RetentionReport says what retention deleted.
type RetentionReport struct {
	Cutoff  time.Time // rows of days before this were deleted
	Deleted int64
}

// retentionCutoff is the oldest record time kept: ingest computes the same
// instant (ingest.RetentionCutoff) and does not index records before it.
func (r *Runner) retentionCutoff() time.Time {
	return ingest.RetentionCutoff(r.now(), orDefault(r.RetentionDays, 90))
}

// Retain deletes every index row of a day before the retention window:
// events and posting rows of days before it, and the checkpoints
// and counts of blob hours that old. Day partitions make these
// whole-partition deletes. Repeating it deletes nothing more.
func (r *Runner) Retain(ctx context.Context) (*RetentionReport, error) {
	cutoff := r.retentionCutoff()
	rep := &RetentionReport{Cutoff: cutoff}
	// RowKeys start with the inverted time, fixed width: a row older than
	// the cutoff sorts after every key starting with the cutoff's (layout-1
	// lookup tables, while backfill has not dropped them, alike).
	oldRows := "RowKey gt " + index.ODataString(index.TimeRowKeyBound(cutoff)+"_~")
	for _, tbl := range []string{index.TableEvents, index.TableByCaller, index.TableByIP, index.TableByObject} {
		n, err := r.deleteWhere(ctx, tbl, oldRows, nil)
		rep.Deleted += n
		if err != nil {
			return rep, err
		}
	}
	// Postings partitions are "<kind>|YYYYMMDD", the records' day: days
	// before the cutoff's (a midnight) are older.
	cutDay := cutoff.Format(index.DayLayout)
	var kinds []string
	for _, k := range []string{index.KindCaller, index.KindIP, index.KindObject} {
		kinds = append(kinds, "(PartitionKey ge "+index.ODataString(k+"|")+" and PartitionKey lt "+index.ODataString(k+"|"+cutDay)+")")
	}
	n, err := r.deleteWhere(ctx, index.TablePostings, strings.Join(kinds, " or "), nil)
	rep.Deleted += n
	if err != nil {
		return rep, err
	}
	// Blobs partitions are "<vault>|YYYYMMDDHH". Blobs of other paths live
	// in "~|<hash>" partitions: their counts rows expire by their own Hour
	// and their checkpoints by UpdatedAt. The registry and state
	// partitions ("~vaults", "~state") are kept.
	cutHour := cutoff.Format(index.HourLayout)
	cutTime := cutoff.Format(time.RFC3339Nano)
	n, err = r.deleteWhere(ctx, index.TableBlobs, "", func(k rowKeys) bool {
		if strings.HasPrefix(k.PartitionKey, "~|") {
			return (k.Hour != "" && k.Hour < cutHour) || (k.UpdatedAt != "" && k.UpdatedAt < cutTime)
		}
		i := strings.LastIndexByte(k.PartitionKey, '|')
		return !strings.HasPrefix(k.PartitionKey, "~") && i >= 0 && k.PartitionKey[i+1:] < cutHour
	})
	rep.Deleted += n
	return rep, err
}

// rowKeys is what retention reads of a row.
type rowKeys struct {
	PartitionKey, RowKey string
	Hour, UpdatedAt      string `json:",omitempty"`
}

// deleteWhere deletes the rows of a table matching filter (server side)
// and match (client side), in transactions of up to 100 rows of one
// partition. Rows come in key order, so a partition's deletes are sent as
// soon as the scan moves past it: memory holds one partition's batch.
func (r *Runner) deleteWhere(ctx context.Context, short, filter string, match func(rowKeys) bool) (int64, error) {
	client := r.Tables.Client(short)
	sel := "PartitionKey,RowKey"
	if match != nil {
		sel += ",Hour,UpdatedAt"
	}
	opts := &aztables.ListEntitiesOptions{Select: to.Ptr(sel)}
	if filter != "" {
		opts.Filter = &filter
	}
	var deleted int64
	batch := map[string][]aztables.TransactionAction{}
	flush := func(pk string) error {
		acts := batch[pk]
		delete(batch, pk)
		if len(acts) == 0 {
			return nil
		}
		if _, err := client.SubmitTransaction(ctx, acts, nil); err != nil {
			return fmt.Errorf("catchup: retention in %s partition %q: %w", r.Tables.Name(short), pk, azstore.Classify(err))
		}
		deleted += int64(len(acts))
		return nil
	}
	pager := client.NewListEntitiesPager(opts)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			if errors.Is(azstore.Classify(err), azstore.ErrNotFound) {
				return deleted, nil
			}
			return deleted, fmt.Errorf("catchup: retention scan of %s: %w", r.Tables.Name(short), azstore.Classify(err))
		}
		for _, raw := range page.Entities {
			var k rowKeys
			if err := json.Unmarshal(raw, &k); err != nil {
				return deleted, err
			}
			for pk := range batch {
				if pk != k.PartitionKey {
					if err := flush(pk); err != nil {
						return deleted, err
					}
				}
			}
			if match != nil && !match(k) {
				continue
			}
			body, _ := json.Marshal(struct{ PartitionKey, RowKey string }{k.PartitionKey, k.RowKey})
			batch[k.PartitionKey] = append(batch[k.PartitionKey], aztables.TransactionAction{
				ActionType: aztables.TransactionTypeDelete, Entity: body, IfMatch: to.Ptr(azcore.ETagAny)})
			if len(batch[k.PartitionKey]) == 100 {
				if err := flush(k.PartitionKey); err != nil {
					return deleted, err
				}
			}
		}
	}
	for pk := range batch {
		if err := flush(pk); err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// State row: when retention last ran, so a timer applies it once a day.
const (
	statePartition = "~state"
	stateRetention = "retention"
)

// retentionIfDue runs Retain when it has not run today (UTC). Two runs
// racing both delete the same rows, which is harmless.
func (r *Runner) retentionIfDue(ctx context.Context) (*RetentionReport, error) {
	client := r.Tables.Client(index.TableBlobs)
	today := r.now().Format(index.DayLayout)
	resp, err := client.GetEntity(ctx, statePartition, stateRetention, nil)
	if err == nil {
		var st struct{ LastDay string }
		if json.Unmarshal(resp.Value, &st) == nil && st.LastDay == today {
			return nil, nil
		}
	} else if !errors.Is(azstore.Classify(err), azstore.ErrNotFound) {
		return nil, fmt.Errorf("catchup: read retention state: %w", azstore.Classify(err))
	}
	rep, err := r.Retain(ctx)
	if err != nil {
		return rep, err
	}
	body, _ := json.Marshal(map[string]string{"PartitionKey": statePartition, "RowKey": stateRetention, "LastDay": today})
	if _, err := client.UpsertEntity(ctx, body, nil); err != nil {
		return rep, fmt.Errorf("catchup: write retention state: %w", azstore.Classify(err))
	}
	return rep, nil
}
