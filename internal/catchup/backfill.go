package catchup

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/kvaudit/kvaudit/internal/ingest"
)

// BackfillOptions select the existing blobs to index.
type BackfillOptions struct {
	Since, Until time.Time // blob hours in [Since, Until); zero: unbounded
	Vault        string    // vault name, case-insensitive; "" for all
	Prefix       string    // listing prefix; default "resourceId="
	// Account is the logs account to backfill, by name; "" for every one.
	Account string
}

// Progress is where a backfill stands.
type Progress struct {
	Blobs, Done      int
	Bytes, BytesDone int64
	Records          int64
	Started          time.Time
	Current          string
}

// Backfill indexes blobs that already exist (the triggers only see new
// ones), in every logs account (or opt.Account's). It is idempotent through the same checkpoints as every other run:
// a second backfill reads nothing already indexed, and a backfill stopped
// by ctx (Ctrl-C) resumes where it stopped when run again. Blobs older than
// the retention window are skipped, so a backfill never brings back what
// retention deleted. progress, when set, is called after each blob.
func (r *Runner) Backfill(ctx context.Context, opt BackfillOptions, progress func(Progress)) (Report, error) {
	var rep Report
	prefix := opt.Prefix
	if prefix == "" {
		prefix = "resourceId="
	}
	cutoff := r.retentionCutoff()
	var blobs []Blob
	var total int64
	accts := r.accounts()
	if opt.Account != "" {
		var one []account
		for _, a := range accts {
			if a.name == opt.Account {
				one = append(one, a)
			}
		}
		if len(one) == 0 {
			return rep, fmt.Errorf("catchup: backfill: %q is not a logs account kvaudit reads", opt.Account)
		}
		accts = one
	}
	keep := func(b Blob) error {
		switch {
		case !b.Hour.IsZero() && b.Hour.Before(cutoff):
			return nil
		case !opt.Since.IsZero() && (b.Hour.IsZero() || b.Hour.Before(opt.Since)):
			return nil
		case !opt.Until.IsZero() && (b.Hour.IsZero() || !b.Hour.Before(opt.Until)):
			return nil
		case opt.Vault != "" && !strings.Contains(strings.ToLower(b.Name), "/vaults/"+strings.ToLower(opt.Vault)+"/"):
			return nil
		}
		blobs = append(blobs, b)
		total += b.Length
		return nil
	}
	for _, a := range accts {
		if err := r.list(ctx, a, prefix, keep); err != nil {
			return rep, err
		}
	}
	sortBlobs(blobs)
	rep.Listed = len(blobs)
	p := Progress{Blobs: len(blobs), Bytes: total, Started: r.now()}
	err := r.ingestAll(ctx, blobs, time.Time{}, &rep, func(b Blob, res ingest.Result) {
		p.Done++
		p.BytesDone += b.Length
		p.Records += res.Records
		p.Current = b.Name
		if progress != nil {
			progress(p)
		}
	})
	if err != nil || rep.Failed > 0 {
		return rep, err
	}
	// Every blob listed is in this layout now. Once no checkpoint of an
	// older one is left, the layout-1 lookup tables go: queries refuse to
	// answer while they hold rows.
	old, err := ingest.OldLayoutBlobs(ctx, r.Tables)
	if err != nil {
		return rep, err
	}
	if rep.OldLayout = len(old); rep.OldLayout > 0 {
		r.log().Warn("backfill: blobs still indexed in an older layout; backfill them too (they may be outside -since/-vault, or deleted)",
			slog.Int("blobs", len(old)), slog.String("first", old[0]))
		return rep, nil
	}
	rep.LegacyDropped, err = r.Tables.DropLegacy(ctx)
	return rep, err
}
