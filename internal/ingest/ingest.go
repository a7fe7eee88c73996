// Package ingest indexes Key Vault audit blobs: for one blob it reads the
// bytes past its checkpoint by bounded ranged downloads, parses the
// complete records, writes their rows through package index and moves the
// checkpoint, chunk by chunk. It knows blobs and checkpoints; parsing is
// package parse's, keys and rows are package index's, and it knows nothing
// of HTTP or the Functions host.
//
// # Exactly once
//
// Row keys are deterministic from the record's blob lineage and byte
// offset, so writing a record twice writes the same row. The checkpoint and
// the blob's counts are committed together, with If-Match, only after the
// rows they cover are written; a writer that loses the race re-reads the
// checkpoint and counts only what the winner did not. Every invocation,
// whichever trigger fired it and however often, therefore indexes exactly
// the complete records not yet indexed.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// Ingester indexes blobs of the logs accounts' containers into one set of
// tables. It is safe for concurrent use; each IngestBlob call has its own
// state.
type Ingester struct {
	// Container is the logs container of the first logs account, whose
	// blobs are identified by their path (see accounts.go).
	Container *container.Client
	// Accounts are the logs containers of the other logs accounts, by
	// account name: their blobs are identified as "@<name>/<path>".
	Accounts map[string]*container.Client
	// FirstAccount is the first logs account's name. When set, the first
	// ingest checks it against the one the index records (see
	// CheckFirstAccount).
	FirstAccount string
	Tables       *index.Tables
	Log          *slog.Logger
	// Concurrency is how many transactions are in flight at once (default 8).
	Concurrency int
	// ChunkBytes is how much blob input is indexed between checkpoints
	// (default 4 MiB). It bounds memory and the work redone after a crash.
	ChunkBytes int64
	// RangeBytes is how much one ranged GET of the blob asks for (default
	// 4 MiB).
	RangeBytes int64
	// MaxReported bounds the bad records listed in a Result (default 20);
	// all are counted and logged.
	MaxReported int
	// RetentionDays, when above 0, is the index's retention (the setting
	// RetentionDays): a record older than RetentionCutoff would be deleted
	// by the next retention run, so it is not indexed but counted
	// (Result.TooOld, Checkpoint.TooOld). Zero indexes every record, for
	// tests of old fixtures and tools that want them all.
	RetentionDays int
	// Now is the clock of the retention cutoff (default time.Now).
	Now func() time.Time

	// firstOK is 1 once checkFirst succeeded (accessed atomically; a
	// plain int32 so that an Ingester can still be copied before use).
	firstOK int32
}

// RetentionCutoff is the oldest record time an index with days of
// retention keeps at now: midnight UTC, days before today. Retention
// deletes the rows of records before it (whole days) and ingest does not
// index them, so the two agree to the 100 ns.
func RetentionCutoff(now time.Time, days int) time.Time {
	return now.UTC().Truncate(24*time.Hour).AddDate(0, 0, -days)
}

// cutoff is the Ingester's retention cutoff now; zero when it keeps all.
func (in *Ingester) cutoff() time.Time {
	if in.RetentionDays <= 0 {
		return time.Time{}
	}
	now := time.Now
	if in.Now != nil {
		now = in.Now
	}
	return RetentionCutoff(now(), in.RetentionDays)
}

// Result says what one IngestBlob call did.
type Result struct {
	Blob       string
	From, To   int64 // blob offsets indexed by this call: [From, To)
	Length     int64 // blob length seen
	Records    int64 // records indexed by this call
	BadRecords int64 // malformed records skipped by this call
	Bad        []parse.RecordError
	TooOld     int64 // records older than the retention cutoff, not indexed
	// RetentionCutoff is the oldest record time indexed (zero: no limit).
	RetentionCutoff time.Time
	Rejected        int64 // rows the service refused
	Entities        int64 // rows written (upserted), counts rows excluded
	Commits         int   // checkpoints written
	Races           int   // commits lost to another writer and reconciled
	Skipped         string
	Elapsed         time.Duration
}

const maxRaces = 16

// SkippedBudget is Result.Skipped when a call stopped at a checkpoint
// because its time budget (Options.StopBy) ran out: the rest is left for
// the next call.
const SkippedBudget = "time budget reached"

// Options tune one IngestBlob call. The zero value reads the blob's
// properties itself and has no time budget.
type Options struct {
	// Blob, when set, is what a listing just said of the blob; the call
	// then reads up to that length without asking again.
	Blob *BlobInfo
	// StopBy, when set, ends the call at the first checkpoint after it, so
	// an invocation stops cleanly inside its time limit. A call that stops
	// so lists the blob as unfinished (MarkUnfinished): CatchUp goes on
	// with it whatever its hour.
	StopBy time.Time
}

// BlobInfo is what ingest needs to know of a blob.
type BlobInfo struct {
	Length    int64
	ETag      string
	CreatedOn time.Time
}

// IngestBlob indexes the complete records not yet indexed of the blob
// whose identity is name (parse.BlobID: its path in the first logs
// account, "@<account>/<path>" in another; see accounts.go).
// Calling it again, or from several instances at once, never duplicates or
// loses a record. It returns an error only when storage failed (unreachable,
// throttled beyond retries, refused access): a malformed record is skipped
// and reported in the Result, a missing blob is a Skipped result. A name
// of a logs account the Ingester does not read is an error wrapping
// ErrUnknownAccount, and an index whose first account is another one an
// error wrapping ErrFirstAccountChanged (see CheckFirstAccount).
func (in *Ingester) IngestBlob(ctx context.Context, name string) (Result, error) {
	return in.Ingest(ctx, name, Options{})
}

// Ingest is IngestBlob with options.
func (in *Ingester) Ingest(ctx context.Context, name string, opt Options) (res Result, err error) {
	start := time.Now()
	res.Blob = name
	res.RetentionCutoff = in.cutoff()
	defer func() { res.Elapsed = time.Since(start) }()

	if err := in.Tables.Ensure(ctx); err != nil {
		return res, err
	}
	bc, err := in.BlobClient(name)
	if err != nil {
		return res, err
	}
	properties := func() (*BlobInfo, error) {
		props, err := bc.GetProperties(ctx, nil)
		if err = azstore.Classify(err); err != nil {
			return nil, err
		}
		return &BlobInfo{Length: deref(props.ContentLength), ETag: string(deref(props.ETag)), CreatedOn: derefTime(props.CreationTime)}, nil
	}
	info, fresh := opt.Blob, false
	if info == nil {
		if info, err = properties(); err != nil {
			if errors.Is(err, azstore.ErrNotFound) {
				res.Skipped = "blob not found"
				return res, nil
			}
			return res, fmt.Errorf("ingest: blob %q: %w", name, err)
		}
		fresh = true
	}
	// After the blob answered: an account refusing kvaudit writes nothing
	// to the index, not even this.
	if err := in.checkFirst(ctx); err != nil {
		return res, err
	}

	// reread is set when an index table was re-created while this blob was
	// read: the rows its earlier commits put there may be gone with it.
	reread := false
	for races := 0; ; races++ {
		cp, err := loadCheckpoint(ctx, in.Tables, name)
		if err != nil {
			return res, err
		}
		// A listing can be older than the checkpoint another writer just
		// moved: before believing that the blob shrank or was re-created,
		// ask the blob itself.
		if !fresh && cp.exists && (info.Length < cp.Offset || !info.CreatedOn.Equal(cp.CreatedOn)) {
			if info, err = properties(); err != nil {
				if errors.Is(err, azstore.ErrNotFound) {
					res.Skipped = "blob not found"
					return res, nil
				}
				return res, fmt.Errorf("ingest: blob %q: %w", name, err)
			}
			fresh = true
		}
		length, created := info.Length, info.CreatedOn.UTC()
		res.Length = length
		if cp.exists && created.Before(cp.CreatedOn) {
			// Never go back to an older lineage: what we were told is stale.
			res.Skipped = "blob changed while reading"
			return res, nil
		}
		rebuild := in.reconcileLineage(cp, created, length)
		if reread && cp.exists && cp.Offset > 0 {
			in.readAgainFromZero(cp, "an index table was re-created while the blob was read", length)
			rebuild = true
			// This call now indexes the blob from 0: say so, without
			// counting twice what it had committed.
			res.From, res.Records, res.BadRecords = 0, 0, 0
		}
		reread = false
		if rebuild && cp.exists {
			// Same lineage read again from 0: the counts rows it has are
			// deleted in the first commit's transaction, atomically with
			// the checkpoint, so counts can lag but never double.
			if cp.staleCounts, err = countKeys(ctx, in.Tables, cp); err != nil {
				return res, err
			}
		}
		if !cp.exists {
			if err := registerVault(ctx, in.Tables, name); err != nil {
				return res, err
			}
		}
		if races == 0 {
			res.From = cp.Offset
		}
		if cp.Offset >= length {
			if res.Commits == 0 {
				res.Skipped = "up to date"
			}
			res.To = max(res.To, cp.Offset)
			return res, nil
		}
		if races > maxRaces {
			return res, fmt.Errorf("ingest: blob %q: lost the checkpoint race %d times", name, races)
		}
		done, err := in.run(ctx, bc, cp, BlobInfo{Length: length, ETag: info.ETag}, opt.StopBy, &res)
		if errors.Is(err, errTablesRecreated) {
			reread = true
			err = nil
		}
		if err == nil && res.Skipped == SkippedBudget {
			// After the checkpoint: a crash in between leaves the blob to
			// the next delivery, or to CatchUp's recent hours.
			err = MarkUnfinished(ctx, in.Tables, name, SkippedBudget)
		}
		if err != nil || done {
			return res, err
		}
		res.Races++
	}
}

// reconcileLineage resets cp when it does not describe the blob: a new
// creation time means the blob was deleted and re-created (a new lineage:
// its rows get new keys and the old rows stay, they record events that
// happened); a length below the checkpoint means the checkpoint is wrong or
// the blob was rewritten in place, so it is read again from 0 in the same
// lineage, whose rows upsert in place. It reports whether that lineage's
// existing counts rows must go (a same-lineage re-read).
func (in *Ingester) reconcileLineage(cp *Checkpoint, created time.Time, length int64) (rebuild bool) {
	reason := ""
	switch {
	case !cp.exists, cp.Offset == 0 && cp.CreatedOn.IsZero():
		// Nothing indexed yet (at most a failure recorded): the lineage is
		// the blob's.
		cp.CreatedOn = created
		return false
	case !cp.CreatedOn.Equal(created):
		reason = "blob re-created"
		cp.CreatedOn = created
		rebuild = false // a new lineage has counts rows of its own
	case length < cp.Offset:
		reason = "checkpoint past the end of the blob"
		rebuild = true
	case cp.Layout < index.Layout:
		// Rows of an older layout: write them again. Events rows upsert in
		// place (same keys); the lineage's counts are rebuilt.
		reason = "index rows of layout " + strconv.Itoa(cp.Layout) + ", rebuilt in layout " + strconv.Itoa(index.Layout)
		rebuild = true
	default:
		return false
	}
	in.readAgainFromZero(cp, reason, length)
	return rebuild
}

// readAgainFromZero resets cp to the start of its blob, for reason.
func (in *Ingester) readAgainFromZero(cp *Checkpoint, reason string, length int64) {
	in.log().Warn("ingest: reading blob again from 0", slog.String("blob", cp.Blob), slog.String("reason", reason),
		slog.Int64("checkpoint", cp.Offset), slog.Int64("length", length))
	cp.Offset, cp.Format, cp.Layout = 0, parse.FormatUnknown, index.Layout
	cp.Records, cp.BadRecords, cp.Rejected, cp.TooOld = 0, 0, 0, 0
	cp.Length, cp.BlobETag = 0, ""
	cp.Counts = &index.Counts{}
}

// errTablesRecreated ends a run whose rows went partly into an index table
// that was then dropped and created again.
var errTablesRecreated = errors.New("ingest: an index table was re-created while rows were written")

// pending is a record of the current chunk as counting needs it.
type pending struct {
	offset int64
	bad    bool // malformed: skipped
	old    bool // older than the retention cutoff: not indexed
	own    bool // counted in a row of its own (ownCounts), not the blob's
	tally  index.Tally
}

// run reads [cp.Offset, length) and commits chunk by chunk. done is false
// when a lost race means the caller must reload the checkpoint and go on.
func (in *Ingester) run(ctx context.Context, bc *blob.Client, cp *Checkpoint, seen BlobInfo, stopBy time.Time, res *Result) (done bool, err error) {
	length := seen.Length
	// Bounded ranges up to the length seen, without If-Match: a long read
	// of a blob that grows meanwhile completes (rangeReader).
	body := &rangeReader{ctx: ctx, bc: bc, pos: cp.Offset, end: length, size: in.rangeBytes(), created: cp.CreatedOn}
	defer body.Close()
	changed := func(err error) (bool, error) {
		// The blob changed under us (re-created, shrunk, deleted); the
		// next trigger or CatchUp run sees its new state. Rows written
		// since the last commit are the old lineage's: harmless.
		in.log().Warn("ingest: blob changed while reading, left for the next run", slog.String("blob", cp.Blob), slog.String("error", err.Error()))
		res.Skipped = "blob changed while reading"
		return true, nil
	}
	if err := body.open(); err != nil {
		if errors.Is(err, errBlobChanged) {
			return changed(err)
		}
		return false, fmt.Errorf("ingest: read blob %q: %w", cp.Blob, err)
	}

	w := in.Tables.NewWriter(in.log(), in.concurrency(), 0)
	var enc index.Encoder
	p := parse.NewReader(body, parse.Options{Blob: cp.Blob, Account: in.FirstAccount, BaseOffset: cp.Offset, Format: cp.Format})
	var rec parse.Record
	var rows []index.Entity
	var chunk []pending
	chunkStart := cp.Offset
	chunkBytes := in.ChunkBytes
	if chunkBytes <= 0 {
		chunkBytes = 4 << 20
	}

	cutoff := res.RetentionCutoff
	beside := countedBeside(cp.Blob)

	var rejectedSoFar int64
	// A table dropped while the chunk's rows were written took some of them
	// along, and those of this blob's earlier commits; the writer, or Verify
	// just before the commit, re-created it (Tables.Recover) but cannot
	// write again what it no longer holds. Such a chunk is not committed:
	// the caller reads the blob again from 0 (errTablesRecreated).
	recreated := in.Tables.Recreated()
	flushChunk := func(final bool) (bool, error) {
		// The chunk's postings go with its event rows, before the
		// checkpoint: keyed by lineage and chunkStart, a re-read of the
		// chunk writes the same rows.
		for _, r := range enc.Postings(rows[:0], chunkStart) {
			if err := w.Add(ctx, r); err != nil {
				return false, err
			}
		}
		if err := w.Flush(ctx); err != nil {
			return false, err
		}
		if err := in.Tables.Verify(ctx); err != nil {
			return false, err
		}
		if in.Tables.Recreated() != recreated {
			return false, errTablesRecreated
		}
		end := p.Consumed()
		st := w.Stats()
		res.Entities, res.Rejected = st.Entities, st.Rejected
		ok, err := in.commitChunk(ctx, cp, chunk, chunkStart, end, p.Format(), st.Rejected-rejectedSoFar, final, seen, res)
		rejectedSoFar = st.Rejected
		chunk = chunk[:0]
		chunkStart = end
		return ok, err
	}

	for {
		err := p.Next(&rec)
		var rerr *parse.RecordError
		switch {
		case err == nil && rec.Time.Before(cutoff):
			// Retention would delete it at its next run.
			chunk = append(chunk, pending{offset: rec.Offset, old: true})
		case err == nil:
			rows = enc.Rows(rows[:0], &rec, p.Raw(), cp.SourceID())
			pr := pending{offset: rec.Offset, tally: index.TallyOf(&rec)}
			if !beside(pr.tally.Key) {
				pr.own = true
				own, err := ownCounts(cp.SourceID(), rec.Offset, pr.tally)
				if err != nil {
					return false, err
				}
				rows = append(rows, own...)
			}
			for _, r := range rows {
				if err := w.Add(ctx, r); err != nil {
					return false, err
				}
			}
			chunk = append(chunk, pr)
		case errors.As(err, &rerr):
			chunk = append(chunk, pending{offset: rerr.Offset, bad: true})
			if len(res.Bad) < in.maxReported() {
				res.Bad = append(res.Bad, *rerr)
			}
			in.log().Warn("ingest: bad record skipped", slog.String("blob", cp.Blob), slog.Int64("offset", rerr.Offset), slog.String("reason", rerr.Reason))
		case errors.Is(err, io.EOF):
			if p.Consumed() == chunkStart {
				w.Flush(ctx) //nolint:errcheck // nothing buffered: no record since the last commit
				return true, nil
			}
			ok, err := flushChunk(true)
			return ok, err
		case errors.Is(err, errBlobChanged):
			return changed(err)
		default:
			return false, fmt.Errorf("ingest: read blob %q: %w", cp.Blob, azstore.Classify(err))
		}
		if p.Consumed()-chunkStart >= chunkBytes {
			ok, err := flushChunk(false)
			if err != nil || !ok {
				return false, err
			}
			if !stopBy.IsZero() && time.Now().After(stopBy) {
				res.Skipped = SkippedBudget
				return true, nil
			}
		}
	}
}

// commitChunk moves cp past the chunk [start, end) and commits it with the
// chunk's counts. On a lost race it reloads the checkpoint: if the winner
// stopped inside the chunk, only the chunk's records past the winner's
// offset are counted and the commit is tried again; otherwise it returns
// ok=false so that reading resumes from the winner's offset.
//
// Only the commit that ends a read (final) records the blob's length and
// ETag: they say "this version of the blob has been read to its end", which
// lets a timer run skip it without reading.
func (in *Ingester) commitChunk(ctx context.Context, cp *Checkpoint, chunk []pending, start, end int64, format parse.Format, rejected int64, final bool, seen BlobInfo, res *Result) (bool, error) {
	base := cp
	for try := 0; try < maxRaces; try++ {
		next := *base
		next.Counts = base.Counts.Clone()
		next.staleCounts = cp.staleCounts
		next.touched = map[index.HourKey]bool{}
		var recs, bad, old int64
		for _, pr := range chunk {
			switch {
			case pr.offset < base.Offset:
			case pr.bad:
				bad++
			case pr.old:
				old++
			default:
				recs++
				if !pr.own {
					next.Counts.Add(pr.tally)
					next.touched[pr.tally.Key] = true
				}
			}
		}
		next.Offset, next.Format, next.Layout = end, format, index.Layout
		next.Records += recs
		next.BadRecords += bad
		next.TooOld += old
		next.Rejected = base.Rejected + rejected
		next.Tries, next.LastError = 0, ""
		if final {
			next.Length, next.BlobETag = seen.Length, seen.ETag
		}
		err := commit(ctx, in.Tables, &next)
		if err == nil {
			*cp = next
			res.To = end
			res.Records += recs
			res.BadRecords += bad
			res.TooOld += old
			res.Commits++
			return true, nil
		}
		if !errors.Is(err, errLostRace) {
			return false, err
		}
		res.Races++
		winner, err := loadCheckpoint(ctx, in.Tables, cp.Blob)
		if err != nil {
			return false, err
		}
		if !winner.exists || winner.SourceID() != cp.SourceID() || winner.Offset < start || winner.Offset >= end {
			in.log().Info("ingest: another writer moved the checkpoint; resuming from it",
				slog.String("blob", cp.Blob), slog.Int64("ours", end), slog.Int64("theirs", winner.Offset))
			return false, nil
		}
		base = winner
	}
	return false, fmt.Errorf("ingest: blob %q: lost the checkpoint race %d times", cp.Blob, maxRaces)
}

// countedBeside returns whether stats finds the counts of a record of key
// in blob's own partition, beside its checkpoint: the blob's path names the
// record's vault and an hour at most index.BlobHourMargin from the
// record's.
func countedBeside(blob string) func(index.HourKey) bool {
	bp, ok := parse.ParseBlobPath(blob)
	hours := map[string]bool{}
	if ok && !bp.Hour.IsZero() {
		for d := -index.BlobHourMargin; d <= index.BlobHourMargin; d += time.Hour {
			hours[bp.Hour.Add(d).Format(index.HourLayout)] = true
		}
	}
	return func(k index.HourKey) bool { return hours[k.Hour] && k.Vault == bp.Vault }
}

// ownCounts is the counts row of one record that stats would not find
// beside its blob's checkpoint (a blob path that is not Azure Monitor's
// usual shape, a record of another vault, or one hours from its blob's
// hour). It lives in the Blobs partition of the record's own vault and
// hour, which stats reads for that hour, and its key is the record's
// lineage and offset: written with the record's event rows, before the
// checkpoint, it is as idempotent as they are, so it counts the record
// exactly once however often the blob is read.
func ownCounts(sourceID string, offset int64, t index.Tally) ([]index.Entity, error) {
	c := &index.Counts{}
	c.Add(t)
	pk := index.EncodeKeyPart(t.Key.Vault) + "|" + t.Key.Hour
	return index.CountsEntities(index.TableBlobs, pk, fmt.Sprintf("%s-%d", sourceID, offset), c)
}

func (in *Ingester) log() *slog.Logger {
	if in.Log == nil {
		return slog.Default()
	}
	return in.Log
}

func (in *Ingester) concurrency() int {
	if in.Concurrency <= 0 {
		return 8
	}
	return in.Concurrency
}

func (in *Ingester) rangeBytes() int64 {
	if in.RangeBytes <= 0 {
		return defaultRangeBytes
	}
	return in.RangeBytes
}

func (in *Ingester) maxReported() int {
	if in.MaxReported <= 0 {
		return 20
	}
	return in.MaxReported
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func derefTime(p *time.Time) time.Time {
	if p == nil {
		return time.Time{}
	}
	return p.UTC()
}
