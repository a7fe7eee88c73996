package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/funchost"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// maxMetadata bounds the invocation metadata we hold; the blob content in
// Data is skipped as it streams by, never held.
const maxMetadata = 1 << 20

// blobTrigger serves POST /BlobTrigger. It reads only the blob's name from
// the invocation and indexes the blob by ranged reads from its checkpoint,
// so the content the host sends is never held and a re-fire with the whole
// blob costs no duplicate rows. It answers non-2xx only when storage could
// not be reached (the host then retries); a bad record, an unusable
// invocation or a failure no retry can fix is reported in Logs with 200,
// and the last is recorded for CatchUp.
func (a *app) blobTrigger(w http.ResponseWriter, r *http.Request) {
	// The budget counts from the request: skipping the blob content the
	// host embeds takes time too.
	stopBy := time.Now().Add(a.settings.BlobTriggerBudget)
	invocationID := r.Header.Get("X-Azure-Functions-InvocationId")
	log := a.log.With(slog.String("invocation", invocationID), slog.String("function", "BlobTrigger"))

	inv, err := funchost.ReadInvocation(r.Body, maxMetadata)
	if err != nil {
		log.Error("unreadable invocation", slog.String("error", err.Error()))
		funchost.WriteResponse(w, http.StatusOK, funchost.Response{Logs: []string{"kvaudit: unreadable invocation: " + err.Error()}})
		return
	}
	trig, err := inv.Blob()
	if err != nil {
		log.Error("invocation without a blob name", slog.String("error", err.Error()))
		funchost.WriteResponse(w, http.StatusOK, funchost.Response{Logs: []string{"kvaudit: " + err.Error()}})
		return
	}
	// {name} in the trigger path is the path inside the container; accept
	// a container-qualified name as well.
	name := strings.TrimPrefix(trig.Name, a.settings.LogsContainer+"/")
	log = log.With(slog.String("blob", name))
	// The trigger's connection is AuditLogsStorage: its blobs are
	// identified by their path (parse.BlobID), which cannot start with "@".
	if _, ok := parse.BlobID("", name); !ok {
		log.Warn("blob name kvaudit cannot identify; not read")
		funchost.WriteResponse(w, http.StatusOK, funchost.Response{Logs: []string{"kvaudit: blob " + name + " not read: a blob name starting with @ cannot be told from another logs account's blob"}})
		return
	}

	// Stop at a checkpoint well inside the host's functionTimeout: past
	// it the host cancels, retries and after five deliveries poisons the
	// blob. The rest is CatchUp's (the blob is listed as unfinished).
	status, logs := a.ingestNotified(r.Context(), log, name, ingest.BlobInfo{Length: trig.ContentLength, ETag: trig.ETag, CreatedOn: trig.CreatedOn}, stopBy)
	funchost.WriteResponse(w, status, funchost.Response{Logs: logs})
}

// ingestNotified indexes the blob identified by id, which a trigger said
// was created or changed (info: what the trigger said of it), and returns
// the invocation's status and Logs. The status is 503 only when storage
// failed (the host, and Event Grid behind it, then retry); a failure no
// retry can fix is recorded on the checkpoint for CatchUp and answered
// 200, as is a bad record.
func (a *app) ingestNotified(ctx context.Context, log *slog.Logger, id string, info ingest.BlobInfo, stopBy time.Time) (int, []string) {
	res, err := a.ingester.Ingest(ctx, id, ingest.Options{StopBy: stopBy})
	if err != nil {
		if azstore.IsTransient(err) || ctx.Err() != nil {
			// Storage down, throttling, or refusing our identity: nothing is
			// wrong with the blob, and nothing was committed past the last
			// checkpoint. The host's retry finds it where it was.
			log.Error("ingest failed; the host will retry", slog.String("error", err.Error()))
			return http.StatusServiceUnavailable, []string{"kvaudit: ingest failed, " + unavailable(err) + ": " + err.Error()}
		}
		// A retry cannot fix this one: five re-deliveries and the poison
		// queue would only cost. The failure is recorded on the checkpoint,
		// and CatchUp tries again until MaxBlobTries, then parks the blob
		// until it changes.
		tries, rerr := ingest.RecordFailure(ctx, a.tables, id, info, err)
		if rerr != nil && azstore.IsTransient(rerr) {
			return http.StatusServiceUnavailable, []string{"kvaudit: ingest failed, " + unavailable(rerr) + ": " + rerr.Error()}
		}
		log.Error("ingest failed; recorded for CatchUp", slog.Int("tries", tries), slog.String("error", err.Error()))
		return http.StatusOK, []string{fmt.Sprintf("kvaudit: ingest of %s failed (try %d, CatchUp will retry): %v", id, tries, err)}
	}
	logs := []string{summary(res)}
	for _, b := range res.Bad {
		logs = append(logs, fmt.Sprintf("bad record skipped: blob %s byte %d: %s", b.Blob, b.Offset, b.Reason))
	}
	if n := res.BadRecords - int64(len(res.Bad)); n > 0 {
		logs = append(logs, fmt.Sprintf("… and %d more bad records (see the structured log)", n))
	}
	log.Info("blob indexed",
		slog.Int64("from", res.From), slog.Int64("to", res.To), slog.Int64("length", res.Length),
		slog.Int64("records", res.Records), slog.Int64("bad", res.BadRecords), slog.Int64("tooOld", res.TooOld), slog.Int64("rejected", res.Rejected),
		slog.Int64("rows", res.Entities), slog.Int("commits", res.Commits), slog.Int("races", res.Races),
		slog.String("skipped", res.Skipped), slog.Int64("ms", res.Elapsed.Milliseconds()))
	if res.Records > 0 {
		// New records: their vault-days' detections, delivered now (a new
		// blob's alert within seconds). Failures are reported, not answered
		// non-2xx: the index is right, and CatchUp evaluates again.
		logs = append(logs, alertLogs(a.alerts.AfterBlob(ctx, id))...)
	}
	return http.StatusOK, logs
}

// unavailable says why storage could not serve: refused access (the error
// then names the setting to check) or unavailable.
func unavailable(err error) string {
	if errors.Is(err, azstore.ErrAuth) {
		return "storage refused access or no token could be had (the host will retry)"
	}
	if errors.Is(err, ingest.ErrFirstAccountChanged) {
		return "a setting names another logs account than the index's (the host will retry)"
	}
	return "storage unavailable"
}

// summary is the first line of an invocation's Logs: what this call did.
func summary(res ingest.Result) string {
	if res.Skipped != "" && res.Commits == 0 {
		return fmt.Sprintf("kvaudit: %s: %s (indexed to byte %d of %d)", res.Blob, res.Skipped, res.To, res.Length)
	}
	s := fmt.Sprintf("kvaudit: %s: indexed %d records from bytes %d–%d of %d in %d ms; %d bad records skipped; %d rows refused by storage",
		res.Blob, res.Records, res.From, res.To, res.Length, res.Elapsed.Milliseconds(), res.BadRecords, res.Rejected)
	if res.TooOld > 0 {
		s += fmt.Sprintf("; %d records older than retention (before %s) not indexed", res.TooOld, res.RetentionCutoff.Format(time.DateOnly))
	}
	switch res.Skipped {
	case "":
	case ingest.SkippedBudget:
		s += fmt.Sprintf("; %s (%s, %s), the rest is continued by CatchUp", res.Skipped, config.SettingTriggerBudget, config.SettingEventBudget)
	default:
		s += "; " + res.Skipped
	}
	return s
}
