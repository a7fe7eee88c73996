// Package catchup keeps the index level with blobs that grow without an
// event: a timer run lists the recent hours of every vault seen so far and
// indexes what grew past its checkpoint, through the same ingest path as
// the blob trigger, in every logs account (one per region holding vaults).
// It also backfills blobs that existed before kvaudit, applies retention,
// and reports status per account and per blob. It knows listings,
// hours and budgets; reading blobs and checkpoints is package ingest's.
//
// Event Grid raises BlobCreated once, when Azure Monitor creates a
// PT1H.json (usually empty), and nothing for the Append Block calls that
// fill it; the polling trigger re-fires but late, and does not exist on
// Flex Consumption. Whichever trigger is configured, the timer makes the
// index exact: every run indexes the complete records not yet indexed, and
// ingest's If-Match checkpoints make it safe beside a racing trigger.
package catchup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// Runner runs catch-up, backfill, retention and status over the logs
// accounts the Ingester reads (its Container and Accounts) and one index.
// Safe for concurrent use.
type Runner struct {
	Tables   *index.Tables
	Ingester *ingest.Ingester
	Log      *slog.Logger

	Hours         int // recent blob hours a timer run looks at (default 3)
	MaxTries      int // failures before a blob is parked until it changes (default 5)
	RetentionDays int // index days kept (default 90)
	// Regions are the logs accounts' regions, by account name, for
	// reports and status (optional).
	Regions map[string]string

	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

// Blob is one listed blob.
type Blob struct {
	Name string    // the blob's identity (parse.BlobID)
	Hour time.Time // the blob's hour, from its path
	ingest.BlobInfo
}

// Report says what a run did.
type Report struct {
	Vaults     int   // vault prefixes looked at
	Listed     int   // blobs listed
	Indexed    int   // blobs that had new bytes and were read
	Records    int64 // records indexed
	BadRecords int64
	TooOld     int64 // records older than retention, not indexed
	Parked     int   // blobs skipped after MaxTries failures, until they change
	Failed     int   // blobs whose ingest failed this run
	Left       int   // blobs not reached because the budget ran out
	Errors     []string
	// Accounts says, per logs account, what was listed and whether the
	// account could be read.
	Accounts  []AccountReport
	Retention *RetentionReport // when this run applied retention
	// OldLayout counts, after a backfill, the blobs whose index rows are
	// still of an older layout (not listed: outside the backfill's
	// selection, or deleted); LegacyDropped the layout-1 tables it deleted
	// once there were none.
	OldLayout     int
	LegacyDropped int
	// IndexedBlobs names the blobs this run indexed records of (the
	// alert sweep evaluates their vault-days).
	IndexedBlobs []string
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now().UTC()
	}
	return time.Now().UTC()
}

func (r *Runner) log() *slog.Logger {
	if r.Log == nil {
		return slog.Default()
	}
	return r.Log
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// recentHours lists the blob hours a timer run covers, oldest first,
// ending with the current hour.
func (r *Runner) recentHours() []time.Time {
	now := r.now().Truncate(time.Hour)
	n := orDefault(r.Hours, 3)
	hours := make([]time.Time, 0, n)
	for i := n - 1; i >= 0; i-- {
		hours = append(hours, now.Add(-time.Duration(i)*time.Hour))
	}
	return hours
}

// hourPrefix is the listing prefix of one vault's blobs of one hour.
func hourPrefix(vaultPrefix string, h time.Time) string {
	return fmt.Sprintf("%sy=%04d/m=%02d/d=%02d/h=%02d/", vaultPrefix, h.Year(), h.Month(), h.Day(), h.Hour())
}

// list calls fn for each blob of account a under prefix (a path in its
// container); the blobs are named by their identity.
func (r *Runner) list(ctx context.Context, a account, prefix string, fn func(Blob) error) error {
	pager := a.c.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: to.Ptr(prefix)})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("catchup: list %q in logs account %s: %w", prefix, a.display(), azstore.Classify(err))
		}
		for _, it := range page.Segment.BlobItems {
			if it.Name == nil || it.Properties == nil {
				continue
			}
			id, ok := parse.BlobID(a.qual, *it.Name)
			if !ok {
				r.log().Warn("catchup: blob name kvaudit cannot identify, skipped", slog.String("account", a.display()), slog.String("blob", *it.Name))
				continue
			}
			b := Blob{Name: id}
			if bp, ok := parse.ParseBlobPath(b.Name); ok {
				b.Hour = bp.Hour
			}
			if it.Properties.ContentLength != nil {
				b.Length = *it.Properties.ContentLength
			}
			if it.Properties.ETag != nil {
				b.ETag = string(*it.Properties.ETag)
			}
			if it.Properties.CreationTime != nil {
				b.CreatedOn = it.Properties.CreationTime.UTC()
			}
			if err := fn(b); err != nil {
				return err
			}
		}
	}
	return nil
}

// display names the account in messages.
func (a account) display() string {
	if a.name == "" {
		return "(first)"
	}
	return a.name
}

// recentBlobs lists the blobs of the recent hours of every known vault,
// oldest hour first; with discover it first looks for vaults no trigger
// reported (at most hourly). An account that cannot be listed is reported
// in accts and left for the next run; the others go on. An account the
// registry names but the settings do not list is skipped.
func (r *Runner) recentBlobs(ctx context.Context, discover bool) (vaults int, blobs []Blob, accts []AccountReport, err error) {
	all := r.accounts()
	accts, rep := accountReports(all)
	if discover {
		if err := r.discoverIfDue(ctx, all, rep); err != nil {
			return 0, nil, accts, err
		}
	}
	prefixes, err := ingest.KnownVaultPrefixes(ctx, r.Tables)
	if err != nil {
		return 0, nil, accts, err
	}
	known := byQual(all)
	type vp struct {
		a    account
		path string
	}
	var vps []vp
	for _, p := range prefixes {
		qual, path := parse.SplitBlobID(p)
		a, ok := known[qual]
		if !ok {
			continue // an account no longer in the settings
		}
		vps = append(vps, vp{a, path})
		rep[qual].Vaults++
	}
	for _, h := range r.recentHours() {
		for _, v := range vps {
			ar := rep[v.a.qual]
			if ar.Error != "" {
				continue
			}
			err := r.list(ctx, v.a, hourPrefix(v.path, h), func(b Blob) error {
				blobs = append(blobs, b)
				ar.Listed++
				return nil
			})
			if err != nil {
				if ctx.Err() != nil {
					return 0, nil, accts, ctx.Err()
				}
				ar.fail(err)
				r.log().Error("catchup: logs account not listed", slog.String("account", v.a.display()), slog.String("error", err.Error()))
			}
		}
	}
	if err := allFailed(accts); err != nil {
		return 0, nil, accts, err
	}
	return len(vps), blobs, accts, nil
}

// allFailed is an error when every account failed: storage is down or
// refuses kvaudit everywhere, and the run says so to its caller as it did
// before there were several accounts.
func allFailed(accts []AccountReport) error {
	if len(accts) == 0 {
		return nil
	}
	for _, a := range accts {
		if a.Error == "" {
			return nil
		}
	}
	if len(accts) == 1 {
		return accts[0].err
	}
	return fmt.Errorf("no logs account could be listed: %w", accts[0].err)
}

// unfinishedBlobs reads the list of blobs with work left (an ingest that
// stopped on its time budget or failed, ingest.MarkUnfinished) and returns
// it, with the blobs not among listed, oldest hour first. With prune, the
// rows of blobs that are gone or older than retention are deleted.
//
// failed are the accounts (by identity qualifier) that could not be
// listed: their unfinished blobs are left for the next run.
func (r *Runner) unfinishedBlobs(ctx context.Context, listed []Blob, prune bool, failed map[string]bool) ([]ingest.Unfinished, []Blob, error) {
	us, err := ingest.ListUnfinished(ctx, r.Tables)
	if err != nil {
		return nil, nil, err
	}
	have := make(map[string]bool, len(listed))
	for _, b := range listed {
		have[b.Name] = true
	}
	cutoff := r.retentionCutoff()
	var more []Blob
	for _, u := range us {
		if have[u.Blob] {
			continue
		}
		have[u.Blob] = true
		b := Blob{Name: u.Blob}
		if bp, ok := parse.ParseBlobPath(u.Blob); ok {
			b.Hour = bp.Hour
		}
		bc, err := r.Ingester.BlobClient(u.Blob)
		if err != nil {
			// A blob of an account no longer in the settings: its row
			// stays, for the day the account is listed again.
			continue
		}
		props, err := bc.GetProperties(ctx, nil)
		err = azstore.Classify(err)
		gone := errors.Is(err, azstore.ErrNotFound) || (!b.Hour.IsZero() && b.Hour.Before(cutoff))
		switch {
		case gone && prune:
			if err := ingest.ClearUnfinished(ctx, r.Tables, u); err != nil {
				return nil, nil, err
			}
			continue
		case gone:
			continue
		case err != nil && failed[accountOf(u.Blob)]:
			continue
		case err != nil:
			return nil, nil, fmt.Errorf("catchup: unfinished blob %q: %w", u.Blob, err)
		}
		b.Length = deref(props.ContentLength)
		b.ETag = string(deref(props.ETag))
		if props.CreationTime != nil {
			b.CreatedOn = props.CreationTime.UTC()
		}
		more = append(more, b)
	}
	sortBlobs(more)
	return us, more, nil
}

// accountOf is the identity qualifier of a blob identity.
func accountOf(id string) string {
	a, _ := parse.SplitBlobID(id)
	return a
}

// failedAccounts are the qualifiers of the accounts a listing could not read.
func failedAccounts(all []account, accts []AccountReport) map[string]bool {
	m := map[string]bool{}
	for i, a := range accts {
		if a.Error != "" {
			m[all[i].qual] = true
		}
	}
	return m
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// completed reports whether an ingest result leaves no work in its blob
// (until it grows).
func completed(res ingest.Result) bool {
	switch res.Skipped {
	case "", "up to date", "blob not found":
		return true
	}
	return false
}

// Run indexes what grew in the recent hours of every known vault, then the
// blobs of any hour with work left (a BlobTrigger or an earlier run that
// stopped on its budget, an ingest that failed). It stops at the first
// checkpoint after stopBy (zero: no budget) and leaves the rest to the next
// run; the first blob it reaches always gets one chunk, so every run moves
// forward. A blob whose ingest fails is recorded and, after MaxTries
// failures, parked until its ETag changes; other blobs go on. Run returns
// an error only when it could not list or read at all (storage
// unreachable, or refusing access: azstore.ErrAuth): a run can always be
// repeated.
//
// Every logs account is covered; one that cannot be listed is reported
// (Report.Accounts, Errors) and the others go on. Run fails only when none
// could be.
func (r *Runner) Run(ctx context.Context, stopBy time.Time) (Report, error) {
	var rep Report
	vaults, blobs, accts, err := r.recentBlobs(ctx, true)
	rep.Accounts = accts
	if err != nil {
		return rep, err
	}
	failed := failedAccounts(r.accounts(), accts)
	for _, a := range accts {
		if a.Error != "" {
			rep.Errors = append(rep.Errors, a.Error)
		}
	}
	unfinished, more, err := r.unfinishedBlobs(ctx, blobs, true, failed)
	if err != nil {
		return rep, err
	}
	blobs = append(blobs, more...)
	rep.Vaults, rep.Listed = vaults, len(blobs)
	done := map[string]bool{}
	err = r.ingestAll(ctx, blobs, stopBy, &rep, func(b Blob, res ingest.Result) {
		if completed(res) {
			done[b.Name] = true
		}
		if res.Records > 0 {
			rep.IndexedBlobs = append(rep.IndexedBlobs, b.Name)
		}
	})
	if err != nil {
		return rep, err
	}
	for _, u := range unfinished {
		// With If-Match on the row as listed: a blob marked again since
		// (a BlobTrigger that stopped on its budget meanwhile) stays listed.
		if done[u.Blob] {
			if err := ingest.ClearUnfinished(ctx, r.Tables, u); err != nil {
				rep.Errors = append(rep.Errors, err.Error())
			}
		}
	}
	if rep.Left == 0 && (stopBy.IsZero() || r.now().Before(stopBy)) {
		ret, err := r.retentionIfDue(ctx)
		if err != nil {
			rep.Errors = append(rep.Errors, err.Error())
		}
		rep.Retention = ret
	}
	return rep, nil
}

// ingestAll ingests each blob that has bytes past its checkpoint. When an
// account refuses kvaudit's credentials (azstore.ErrAuth), its other blobs
// are left for the next run and the other accounts' go on; ingestAll
// returns that error only when no blob could be read at all.
func (r *Runner) ingestAll(ctx context.Context, blobs []Blob, stopBy time.Time, rep *Report, progress func(Blob, ingest.Result)) error {
	maxTries := orDefault(r.MaxTries, 5)
	refused := map[string]error{}
	seen := map[string]bool{}
	for i, b := range blobs {
		seen[accountOf(b.Name)] = true
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if refused[accountOf(b.Name)] != nil {
			continue
		}
		if i > 0 && !stopBy.IsZero() && r.now().After(stopBy) {
			rep.Left = len(blobs) - i
			return nil
		}
		cp, err := ingest.ReadCheckpoint(ctx, r.Tables, b.Name)
		if err != nil {
			return err
		}
		sameBlob := cp.Exists() && cp.CreatedOn.Equal(b.CreatedOn) && cp.Layout == index.Layout
		switch {
		case sameBlob && cp.Length == b.Length && cp.BlobETag == b.ETag && cp.Tries == 0:
			// This exact version was read already (a cut last record
			// waits for the append that completes it).
			if progress != nil {
				progress(b, ingest.Result{Blob: b.Name, Skipped: "up to date"})
			}
			continue
		case sameBlob && cp.Offset == b.Length && cp.Tries == 0:
			if progress != nil {
				progress(b, ingest.Result{Blob: b.Name, Skipped: "up to date"})
			}
			continue
		case cp.Exists() && cp.Tries >= maxTries && cp.BlobETag == b.ETag:
			rep.Parked++
			continue
		}
		info := b.BlobInfo
		res, err := r.Ingester.Ingest(ctx, b.Name, ingest.Options{Blob: &info, StopBy: stopBy})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, ingest.ErrFirstAccountChanged) {
				// A setting is wrong, not the blob: every blob would fail alike.
				return err
			}
			if errors.Is(err, azstore.ErrAuth) {
				// The account refuses our identity, key or SAS: not this
				// blob's fault, and every other blob of the account would
				// fail alike. A failure recorded now would count toward
				// parking a blob that is fine; the next run finds them all
				// where they were.
				refused[accountOf(b.Name)] = err
				rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", b.Name, err))
				r.log().Error("catchup: storage refused access; the account's blobs are left for the next run", slog.String("blob", b.Name), slog.String("error", err.Error()))
				continue
			}
			rep.Failed++
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", b.Name, err))
			tries, rerr := ingest.RecordFailure(ctx, r.Tables, b.Name, b.BlobInfo, err)
			r.log().Error("catchup: ingest failed", slog.String("blob", b.Name), slog.Int("tries", tries), slog.String("error", err.Error()))
			if rerr != nil && azstore.IsTransient(rerr) {
				return rerr
			}
			continue
		}
		if res.Commits > 0 || res.Records > 0 {
			rep.Indexed++
		}
		rep.Records += res.Records
		rep.BadRecords += res.BadRecords
		rep.TooOld += res.TooOld
		if progress != nil {
			progress(b, res)
		}
		if res.Skipped == ingest.SkippedBudget {
			rep.Left = len(blobs) - i
			return nil
		}
	}
	if len(refused) > 0 && len(refused) == len(seen) {
		for _, err := range refused {
			return err // every account refused: say so to the caller
		}
	}
	return nil
}

// Summary is a one-line account of rep for the invocation's Logs.
func (rep Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kvaudit catch-up: %d vaults, %d blobs listed, %d read, %d records indexed, %d bad records skipped",
		rep.Vaults, rep.Listed, rep.Indexed, rep.Records, rep.BadRecords)
	if rep.TooOld > 0 {
		fmt.Fprintf(&b, ", %d records older than retention not indexed", rep.TooOld)
	}
	if rep.Parked > 0 {
		fmt.Fprintf(&b, ", %d parked after repeated failures", rep.Parked)
	}
	if rep.Failed > 0 {
		fmt.Fprintf(&b, ", %d failed", rep.Failed)
	}
	if rep.Left > 0 {
		fmt.Fprintf(&b, ", %d left for the next run (time budget)", rep.Left)
	}
	if rep.Retention != nil {
		fmt.Fprintf(&b, "; retention: %d rows older than %s deleted", rep.Retention.Deleted, rep.Retention.Cutoff.Format("2006-01-02"))
	}
	return b.String()
}

// sortBlobs orders blobs oldest hour first, then by name.
func sortBlobs(blobs []Blob) {
	sort.Slice(blobs, func(i, j int) bool {
		if !blobs[i].Hour.Equal(blobs[j].Hour) {
			return blobs[i].Hour.Before(blobs[j].Hour)
		}
		return blobs[i].Name < blobs[j].Name
	})
}
