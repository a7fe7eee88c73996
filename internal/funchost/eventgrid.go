package funchost

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The Event Grid trigger, as the Functions host hands it to a custom
// handler. Primary sources (Azure/azure-functions-host, Azure/azure-sdk-
// for-net sdk/eventgrid/Microsoft.Azure.WebJobs.Extensions.EventGrid,
// Azure/azure-webjobs-sdk):
//
//   - The extension binds the trigger to a JToken (BindToTrigger<JToken>)
//     and registers JToken→string (ToString(Formatting.Indented)); a
//     script function's trigger parameter, without dataType, gets the
//     first default type the converters reach among byte[], JObject,
//     JArray and string (TriggerAdapterBindingProvider.GetDefaultType),
//     which is string: the event's JSON text, indented.
//   - The host's HTTP worker puts every input in Data with
//     GetHttpScriptInvocationContextValue (ScriptInvocationContextExtensions):
//     a string is not a JObject, so it is JsonConvert.SerializeObject'd, and
//     the whole context is serialized again: the event arrives as a JSON
//     string holding a JSON string holding the event — encoded twice, as
//     blob content in string mode is.
//   - Metadata holds the trigger's binding data: "data" (the event's data
//     object, as a JSON object) and "sys".
//
// ReadEventGridEvents accepts the event as that twice-encoded string, and
// also encoded once or as a plain object or array, so that a host whose
// converter choice differs is read all the same.

// EventTypeBlobCreated is the Event Grid event type of a new blob (Put
// Blob, Put Block List, Copy Blob; not Append Block).
const EventTypeBlobCreated = "Microsoft.Storage.BlobCreated"

// ErrNoEvent reports an invocation without an Event Grid event in the
// binding asked for (nor an event's data in Metadata).
var ErrNoEvent = errors.New("funchost: invocation carries no Event Grid event")

// EventGridEvent is one event, in the Event Grid schema or the CloudEvents
// 1.0 schema (type, source and time are read as EventType, Topic and
// EventTime).
type EventGridEvent struct {
	ID        string
	Topic     string // the source resource: the storage account's resource id
	Subject   string // /blobServices/default/containers/<c>/blobs/<name>
	EventType string
	EventTime time.Time
	Data      json.RawMessage
}

// BlobCreatedData is the data of a Microsoft.Storage.BlobCreated event
// (learn.microsoft.com/azure/event-grid/event-schema-blob-storage).
type BlobCreatedData struct {
	API           string // PutBlob, PutBlockList, CopyBlob, …
	URL           string // the blob's URL: account, container and name
	BlobType      string // BlockBlob, AppendBlob, …
	ContentLength int64
	// ETag carries its quotes, as the blob service returns it (events
	// carry it without).
	ETag string
}

// EventGridEvents reads the events of the Event Grid trigger binding
// named binding: the Data value ReadInvocation kept (call it with that
// binding in keep), an event or an array of events (cardinality many),
// encoded zero, one or two times as a JSON string. Without that Data
// value, the trigger's "data" in Metadata is read as the data of one
// event of unknown type and id. The error wraps ErrNoEvent or
// ErrMalformed.
func (inv *Invocation) EventGridEvents(binding string) ([]EventGridEvent, error) {
	raw, ok := inv.Data[binding]
	if !ok {
		data, ok := inv.Metadata["data"]
		if !ok || len(data) == 0 || data[0] != '{' {
			return nil, ErrNoEvent
		}
		return []EventGridEvent{{Data: data}}, nil
	}
	// Strip the string encodings: at most two, as the host adds.
	for range 2 {
		if len(raw) == 0 || raw[0] != '"' {
			break
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("%w: the event is a string that does not decode: %v", ErrMalformed, err)
		}
		raw = json.RawMessage(strings.TrimSpace(s))
	}
	var objs []json.RawMessage
	switch {
	case len(raw) > 0 && raw[0] == '{':
		objs = []json.RawMessage{raw}
	case len(raw) > 0 && raw[0] == '[':
		if err := json.Unmarshal(raw, &objs); err != nil {
			return nil, fmt.Errorf("%w: the events are not a JSON array: %v", ErrMalformed, err)
		}
	default:
		return nil, fmt.Errorf("%w: the event is neither a JSON object nor an array", ErrMalformed)
	}
	out := make([]EventGridEvent, 0, len(objs))
	for _, o := range objs {
		e, err := parseEvent(o)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// parseEvent reads one event object in either schema.
func parseEvent(raw json.RawMessage) (EventGridEvent, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return EventGridEvent{}, fmt.Errorf("%w: an event is not a JSON object", ErrMalformed)
	}
	str := func(keys ...string) string {
		for _, k := range keys {
			if s, ok := decodeString(field(m, k)); ok {
				return s
			}
		}
		return ""
	}
	e := EventGridEvent{
		ID:        str("id"),
		Topic:     str("topic", "source"),
		Subject:   str("subject"),
		EventType: str("eventType", "type"),
		Data:      field(m, "data"),
	}
	if t := str("eventTime", "time"); t != "" {
		e.EventTime = timestamp(json.RawMessage(encodeForTimestamp(t)))
	}
	return e, nil
}

// encodeForTimestamp quotes s so that timestamp can read it.
func encodeForTimestamp(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

// BlobCreated reads the event's data as a BlobCreated event's. It fails
// when the data is not an object or names no URL; other fields are best
// effort (zero when absent).
func (e EventGridEvent) BlobCreated() (BlobCreatedData, error) {
	m := object(e.Data)
	if m == nil {
		return BlobCreatedData{}, fmt.Errorf("%w: the event has no data object", ErrMalformed)
	}
	var d BlobCreatedData
	d.URL, _ = decodeString(field(m, "url"))
	if d.URL == "" {
		return BlobCreatedData{}, fmt.Errorf("%w: the event's data names no blob url", ErrMalformed)
	}
	d.API, _ = decodeString(field(m, "api"))
	d.BlobType = blobType(field(m, "blobType"))
	d.ContentLength, _ = integer(field(m, "contentLength"))
	if s, ok := decodeString(field(m, "eTag")); ok && s != "" {
		d.ETag = quoteETag(s)
	}
	return d, nil
}
