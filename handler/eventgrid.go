package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/kvaudit/kvaudit/internal/funchost"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// eventGridBinding is the trigger's name in EventGridTrigger/function.json.
const eventGridBinding = "eventGridEvent"

// eventGridTrigger serves POST /EventGridTrigger: Microsoft.Storage.BlobCreated
// events from the system topics of any number of logs accounts (issue 17).
// The event only says which blob: kvaudit reads it itself, by ranged reads
// from its checkpoint, as for BlobTrigger, so the host never downloads
// the blob to embed it.
//
// An event names a URL, and an event subscription to this function can be
// made by anyone who controls a topic and holds the extension's key: a
// blob is read only when the URL is under the blob endpoint of a logs
// account the settings list, in the logs container. Any other event is
// answered 200 with a log line — no retry can make it readable. The answer
// is 503 only when storage failed: the host fails the delivery and Event
// Grid retries it (exponential backoff, up to 24 hours, then the event
// subscription's dead-letter container), and CatchUp covers the blob
// meanwhile. The invocation stops at a checkpoint after EventGridBudget,
// inside the 30 s Event Grid waits for an answer before delivering again;
// CatchUp goes on with the rest.
func (a *app) eventGridTrigger(w http.ResponseWriter, r *http.Request) {
	stopBy := time.Now().Add(a.settings.EventGridBudget)
	log := a.log.With(slog.String("invocation", r.Header.Get("X-Azure-Functions-InvocationId")), slog.String("function", "EventGridTrigger"))
	inv, err := funchost.ReadInvocation(r.Body, maxMetadata, eventGridBinding)
	if err != nil {
		log.Error("unreadable invocation", slog.String("error", err.Error()))
		funchost.WriteResponse(w, http.StatusOK, funchost.Response{Logs: []string{"kvaudit: unreadable invocation: " + err.Error()}})
		return
	}
	events, err := inv.EventGridEvents(eventGridBinding)
	if err != nil {
		log.Error("invocation without a usable event", slog.String("error", err.Error()))
		funchost.WriteResponse(w, http.StatusOK, funchost.Response{Logs: []string{"kvaudit: " + err.Error()}})
		return
	}
	status := http.StatusOK
	var logs []string
	for _, e := range events {
		elog := log.With(slog.String("event", e.ID))
		if e.EventType != "" && e.EventType != funchost.EventTypeBlobCreated {
			elog.Warn("event of another type ignored", slog.String("type", e.EventType))
			logs = append(logs, fmt.Sprintf("kvaudit: event %s of type %q ignored: only %s is read", e.ID, e.EventType, funchost.EventTypeBlobCreated))
			continue
		}
		d, err := e.BlobCreated()
		if err != nil {
			elog.Warn("event ignored", slog.String("error", err.Error()))
			logs = append(logs, fmt.Sprintf("kvaudit: event %s ignored: %v", e.ID, err))
			continue
		}
		acct, path, ok := a.settings.BlobOf(d.URL, a.settings.LogsContainer)
		if !ok {
			// Never fetched: the URL is the event publisher's to choose.
			elog.Warn("event names a blob outside the logs accounts and container kvaudit reads; not read",
				slog.String("url", d.URL), slog.String("topic", e.Topic))
			logs = append(logs, fmt.Sprintf("kvaudit: event %s names %q, which is not in %s of a logs account kvaudit reads (%s, %s): not read",
				e.ID, d.URL, a.settings.LogsContainer, "AuditLogsStorage", "AuditLogsAccounts"))
			continue
		}
		qual := acct.Name
		if acct.First {
			qual = ""
		}
		id, ok := parse.BlobID(qual, path)
		if !ok {
			elog.Warn("blob name kvaudit cannot identify; not read", slog.String("account", acct.Name), slog.String("blob", path))
			logs = append(logs, fmt.Sprintf("kvaudit: blob %s of %s not read: a blob name starting with @ cannot be told from another logs account's blob", path, acct.Name))
			continue
		}
		st, l := a.ingestNotified(r.Context(), elog.With(slog.String("account", acct.Name), slog.String("blob", path)), id,
			ingest.BlobInfo{Length: d.ContentLength, ETag: d.ETag}, stopBy)
		logs = append(logs, l...)
		if st != http.StatusOK {
			status = st
		}
	}
	funchost.WriteResponse(w, status, funchost.Response{Logs: logs})
}
