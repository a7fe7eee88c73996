// Package alert pushes kvaudit's detections to people: after indexing, it
// evaluates the detections of the vault-days that changed, gives each
// finding a stable id (kind, vault, subject, window), claims it in a
// state table with an insert-only write, and delivers it to the
// configured sinks — a webhook (CloudEvents 1.0, signed as Standard
// Webhooks), Microsoft Teams (an Adaptive Card through a Workflows
// webhook) and an Event Grid topic (CloudEvents, Microsoft Entra token) —
// retrying with backoff. A re-read blob, a retried invocation or racing
// instances never alert twice: only the writer whose insert succeeded
// delivers, and the webhook-id, CloudEvents id and Event Grid event id are
// the finding's id, so a receiver can drop the one repeat a crash between
// "sent" and "recorded" can cause. What could not be delivered after the
// retries stays in the table as undelivered: status, the web page and the
// structured log show it.
//
// The package knows tuning (Tuning, the AlertTuning setting), the state
// table (Store), the engine that ties evaluation to delivery (Engine) and
// one file per sink. It knows nothing of HTTP routes or the Functions
// host; the handler wires it after BlobTrigger and CatchUp.
package alert
