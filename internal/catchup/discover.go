package catchup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/parse"
)

const stateDiscovery = "discovery"

// discoverIfDue finds the vault prefixes of each logs account's container
// by a hierarchical listing (one level per call, never the blobs
// themselves) at most once an hour per account, and registers them. It
// lets the timer follow a vault that no trigger ever reported: with Event
// Grid a missed BlobCreated is never raised again. An account that cannot
// be listed is reported in rep and tried again next run; the others go on.
func (r *Runner) discoverIfDue(ctx context.Context, accts []account, rep map[string]*AccountReport) error {
	client := r.Tables.Client(index.TableBlobs)
	hour := r.now().Format(index.HourLayout)
	for _, a := range accts {
		// The first account keeps the row it had before there were several.
		rk := stateDiscovery
		if a.qual != "" {
			rk += "|" + a.qual
		}
		resp, err := client.GetEntity(ctx, statePartition, rk, nil)
		if err == nil {
			var st struct{ LastHour string }
			if json.Unmarshal(resp.Value, &st) == nil && st.LastHour == hour {
				continue
			}
		} else if !errors.Is(azstore.Classify(err), azstore.ErrNotFound) {
			return fmt.Errorf("catchup: read discovery state: %w", azstore.Classify(err))
		}
		prefixes, err := r.discover(ctx, a)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rep[a.qual].fail(err)
			r.log().Error("catchup: logs account not listed", slog.String("account", a.display()), slog.String("error", err.Error()))
			continue
		}
		for _, p := range prefixes {
			id, ok := parse.BlobID(a.qual, p)
			if !ok {
				continue
			}
			if err := ingest.RegisterVaultPrefix(ctx, r.Tables, id); err != nil {
				return err
			}
		}
		body, _ := json.Marshal(map[string]string{"PartitionKey": statePartition, "RowKey": rk, "LastHour": hour})
		if _, err := client.UpsertEntity(ctx, body, nil); err != nil {
			return fmt.Errorf("catchup: write discovery state: %w", azstore.Classify(err))
		}
	}
	return nil
}

// discover walks resourceId=/SUBSCRIPTIONS/<s>/RESOURCEGROUPS/<g>/PROVIDERS/
// MICROSOFT.KEYVAULT/VAULTS/<v>/ of account a one level at a time and
// returns the vault prefixes (paths in its container). Depth is bounded by
// the path's shape.
func (r *Runner) discover(ctx context.Context, a account) ([]string, error) {
	var out []string
	var walk func(prefix string, depth int) error
	walk = func(prefix string, depth int) error {
		if isVaultPrefix(prefix) {
			out = append(out, prefix)
			return nil
		}
		if depth > 10 {
			return nil
		}
		pager := a.c.NewListBlobsHierarchyPager("/", &container.ListBlobsHierarchyOptions{Prefix: to.Ptr(prefix)})
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("catchup: discover %q in logs account %s: %w", prefix, a.display(), azstore.Classify(err))
			}
			for _, p := range page.Segment.BlobPrefixes {
				if p.Name == nil || strings.Contains(*p.Name, "/y=") {
					continue
				}
				if err := walk(*p.Name, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return out, walk("resourceId=/", 0)
}

// isVaultPrefix reports a prefix ending in /VAULTS/<name>/ (any case).
func isVaultPrefix(p string) bool {
	up := strings.ToUpper(p)
	i := strings.LastIndex(up, "/VAULTS/")
	return i >= 0 && strings.Count(up[i+len("/VAULTS/"):], "/") == 1 && strings.HasSuffix(up, "/") && len(up) > i+len("/VAULTS/")+1
}
