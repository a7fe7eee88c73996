package query

import (
	"context"
	"sort"
	"strings"

	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// Vaults lists the name of every vault kvaudit has indexed, lower-cased
// and sorted, from ingest's registry of vault blob prefixes: one request,
// whatever the size of the index. An index with nothing in it yet (no
// table) lists none, without error.
func (q *Querier) Vaults(ctx context.Context) ([]string, error) {
	prefixes, err := ingest.KnownVaultPrefixes(ctx, q.Tables)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	out := []string{}
	for _, p := range prefixes {
		bp, ok := parse.ParseBlobPath(strings.TrimSuffix(p, "/"))
		if !ok || seen[bp.Vault] {
			continue
		}
		seen[bp.Vault] = true
		out = append(out, bp.Vault)
	}
	sort.Strings(out)
	return out, nil
}
