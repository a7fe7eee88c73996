package catchup

import (
	"sort"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/kvaudit/kvaudit/internal/parse"
)

// account is one logs account as a run sees it (issue 17): CatchUp,
// discovery, backfill and status cover every account the Ingester reads.
type account struct {
	name   string // the storage account's name ("" when not configured: tests)
	qual   string // what qualifies its blob identities: "" for the first account
	region string
	c      *container.Client
}

// accounts lists the logs accounts, the first one first, then the others
// by name.
func (r *Runner) accounts() []account {
	in := r.Ingester
	out := []account{{name: in.FirstAccount, region: r.Regions[in.FirstAccount], c: in.Container}}
	names := make([]string, 0, len(in.Accounts))
	for n := range in.Accounts {
		if n != in.FirstAccount {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, account{name: n, qual: n, region: r.Regions[n], c: in.Accounts[n]})
	}
	return out
}

// byQual indexes accounts by their identity qualifier.
func byQual(accts []account) map[string]account {
	m := make(map[string]account, len(accts))
	for _, a := range accts {
		m[a.qual] = a
	}
	return m
}

// AccountReport is what a run saw of one logs account.
type AccountReport struct {
	Account string `json:"account"`
	Region  string `json:"region,omitempty"`
	Vaults  int    `json:"vaults"` // vault prefixes of the account looked at
	Listed  int    `json:"listed"` // blobs listed
	// Error is why the account could not be listed or read this run (its
	// blobs were left for the next); "" when it could.
	Error string `json:"error,omitempty"`
	err   error
}

// fail records err as the account's error this run.
func (a *AccountReport) fail(err error) { a.Error, a.err = err.Error(), err }

// accountReports starts a report row per account.
func accountReports(accts []account) ([]AccountReport, map[string]*AccountReport) {
	out := make([]AccountReport, len(accts))
	idx := make(map[string]*AccountReport, len(accts))
	for i, a := range accts {
		out[i] = AccountReport{Account: a.name, Region: a.region}
		idx[a.qual] = &out[i]
	}
	return out, idx
}

// splitID splits a blob identity into its qualifier and path.
func splitID(id string) (qual, path string) { return parse.SplitBlobID(id) }
