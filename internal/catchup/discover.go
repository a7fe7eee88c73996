package catchup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
)

const stateDiscovery = "discovery"

// discoverIfDue finds the vault prefixes of the container by a
// hierarchical listing (one level per call, never the blobs themselves) at
// most once an hour, and registers them. It lets the timer follow a vault
// that no trigger ever reported: with Event Grid a missed BlobCreated is
// never raised again.
func (r *Runner) discoverIfDue(ctx context.Context) error {
	client := r.Tables.Client(index.TableBlobs)
	hour := r.now().Format(index.HourLayout)
	resp, err := client.GetEntity(ctx, statePartition, stateDiscovery, nil)
	if err == nil {
		var st struct{ LastHour string }
		if json.Unmarshal(resp.Value, &st) == nil && st.LastHour == hour {
			return nil
		}
	} else if !errors.Is(azstore.Classify(err), azstore.ErrNotFound) {
		return fmt.Errorf("catchup: read discovery state: %w", azstore.Classify(err))
	}
	prefixes, err := r.discover(ctx)
	if err != nil {
		return err
	}
	for _, p := range prefixes {
		if err := ingest.RegisterVaultPrefix(ctx, r.Tables, p); err != nil {
			return err
		}
	}
	body, _ := json.Marshal(map[string]string{"PartitionKey": statePartition, "RowKey": stateDiscovery, "LastHour": hour})
	if _, err := client.UpsertEntity(ctx, body, nil); err != nil {
		return fmt.Errorf("catchup: write discovery state: %w", azstore.Classify(err))
	}
	return nil
}

// discover walks resourceId=/SUBSCRIPTIONS/<s>/RESOURCEGROUPS/<g>/PROVIDERS/
// MICROSOFT.KEYVAULT/VAULTS/<v>/ one level at a time and returns the vault
// prefixes. Depth is bounded by the path's shape.
func (r *Runner) discover(ctx context.Context) ([]string, error) {
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
		pager := r.Container.NewListBlobsHierarchyPager("/", &container.ListBlobsHierarchyOptions{Prefix: to.Ptr(prefix)})
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("catchup: discover %q: %w", prefix, azstore.Classify(err))
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
