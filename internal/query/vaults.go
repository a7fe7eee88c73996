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
	infos, err := q.VaultInfos(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(infos))
	for i, v := range infos {
		out[i] = v.Name
	}
	return out, nil
}

// VaultInfo is what the registry tells of one vault: where its logs come
// from. A vault whose logs moved to another account (or that two accounts
// hold) lists both.
type VaultInfo struct {
	Name string `json:"name"` // lower-cased
	// Subscription and ResourceGroup are as the blob path names them
	// (lower-cased), which is how Azure Monitor writes the vault's
	// resource id.
	Subscription  string   `json:"subscription"`
	ResourceGroup string   `json:"resourceGroup"`
	Accounts      []string `json:"accounts"`          // logs accounts holding its blobs
	Regions       []string `json:"regions,omitempty"` // their configured regions
}

// VaultInfos is Vaults with each vault's subscription, resource group,
// logs accounts and regions (from Querier.Regions), sorted by name. One
// request, as Vaults.
func (q *Querier) VaultInfos(ctx context.Context) ([]VaultInfo, error) {
	prefixes, err := ingest.KnownVaultPrefixes(ctx, q.Tables)
	if err != nil {
		return nil, err
	}
	byName := map[string]*VaultInfo{}
	for _, p := range prefixes {
		bp, ok := parse.ParseBlobPath(strings.TrimSuffix(p, "/"))
		if !ok {
			continue
		}
		acct, _ := parse.SplitBlobID(p)
		if acct == "" {
			acct = q.FirstAccount
		}
		v := byName[bp.Vault]
		if v == nil {
			v = &VaultInfo{Name: bp.Vault, Subscription: strings.ToLower(bp.SubscriptionID), ResourceGroup: strings.ToLower(bp.ResourceGroup), Accounts: []string{}}
			byName[bp.Vault] = v
		}
		v.Accounts = addSorted(v.Accounts, acct)
		if r := q.Regions[acct]; r != "" {
			v.Regions = addSorted(v.Regions, r)
		}
	}
	out := make([]VaultInfo, 0, len(byName))
	for _, v := range byName {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// addSorted inserts s into the sorted set xs.
func addSorted(xs []string, s string) []string {
	i := sort.SearchStrings(xs, s)
	if i < len(xs) && xs[i] == s {
		return xs
	}
	return append(xs[:i], append([]string{s}, xs[i:]...)...)
}
