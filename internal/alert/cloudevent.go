package alert

import "time"

// CloudEvent is a CloudEvents 1.0 event in the structured JSON format
// (github.com/cloudevents/spec, cloudevents/spec.md and
// cloudevents/formats/json-format.md): the required attributes id,
// source, specversion and type, with time, subject and the data's
// content type, and the alert as data.
type CloudEvent struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Subject         string `json:"subject,omitempty"`
	Time            string `json:"time"`
	DataContentType string `json:"datacontenttype"`
	Data            *Alert `json:"data"`
}

// Content types of the two CloudEvents modes kvaudit sends.
const (
	ContentTypeCloudEvent      = "application/cloudevents+json; charset=utf-8"
	ContentTypeCloudEventBatch = "application/cloudevents-batch+json; charset=utf-8"
)

// EventTypePrefix starts every alert's CloudEvents type, followed by the
// kind: com.github.kvaudit.alert.massSecretRetrieval. A reverse-DNS
// prefix, as the spec recommends, from the project's module path.
const EventTypePrefix = "com.github.kvaudit.alert."

// cloudEvent wraps a. The id is the alert's, so that a receiver (or Event
// Grid's subscribers) can deduplicate; source names the vault, a
// URI-reference of letters, digits and hyphens.
func cloudEvent(a *Alert) CloudEvent {
	t := a.DetectedAt
	if _, err := time.Parse(time.RFC3339, t); err != nil {
		t = time.Now().UTC().Format(time.RFC3339)
	}
	return CloudEvent{
		SpecVersion: "1.0", ID: a.ID, Source: "/kvaudit/vaults/" + a.Vault, Type: EventTypePrefix + a.Kind,
		Subject: a.Window, Time: t, DataContentType: "application/json", Data: a,
	}
}
