package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// EventGrid publishes each alert to an Event Grid topic whose input
// schema is CloudEvents 1.0, as a one-event CloudEvents batch
// (application/cloudevents-batch+json) authenticated with a Microsoft
// Entra token for https://eventgrid.azure.net (the app's managed
// identity, which needs the EventGrid Data Sender role on the topic).
// Learn: "Publish events to Azure Event Grid custom topics" (the endpoint
// https://<topic>.<region>-1.eventgrid.azure.net/api/events with
// api-version 2018-01-01) and "Authenticate publishing clients using
// Microsoft Entra ID" (the scope). Event Grid passes the CloudEvents id
// on, so subscribers (Logic Apps, Sentinel, functions) can deduplicate.
type EventGrid struct {
	endpoint string
	pl       runtime.Pipeline
}

// EventGridScope is the token scope Event Grid's data plane accepts.
const EventGridScope = "https://eventgrid.azure.net/.default"

// eventGridAPIVersion is the publish API version Learn documents.
const eventGridAPIVersion = "2018-01-01"

// EventGridCredential is the credential a topic is published with: the
// user-assigned managed identity clientID, else DefaultAzureCredential
// (the system-assigned identity in Azure, az login on a workstation).
// No I/O.
func EventGridCredential(clientID string) (azcore.TokenCredential, error) {
	if clientID != "" {
		return azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
			ID: azidentity.ClientID(clientID),
			ClientOptions: azcore.ClientOptions{Retry: policy.RetryOptions{
				MaxRetries: 2, RetryDelay: 200 * time.Millisecond, MaxRetryDelay: time.Second, TryTimeout: 15 * time.Second,
			}},
		})
	}
	return azidentity.NewDefaultAzureCredential(nil)
}

// NewEventGrid is the sink publishing to endpoint (the topic's endpoint,
// https://…/api/events) with cred. transport is nil in production (the
// sinks' client); tests pass a client that trusts their receiver.
// Retries are the engine's (one schedule for every sink), so the
// pipeline tries once.
func NewEventGrid(endpoint string, cred azcore.TokenCredential, transport *http.Client) (*EventGrid, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("want the topic's https endpoint, as az eventgrid topic show --query endpoint prints it")
	}
	q := u.Query()
	if q.Get("api-version") == "" {
		q.Set("api-version", eventGridAPIVersion)
		u.RawQuery = q.Encode()
	}
	if transport == nil {
		transport = httpClient()
	}
	pl := runtime.NewPipeline("kvaudit-alert", "v1",
		runtime.PipelineOptions{PerRetry: []policy.Policy{runtime.NewBearerTokenPolicy(cred, []string{EventGridScope}, nil)}},
		&policy.ClientOptions{
			Retry:     policy.RetryOptions{MaxRetries: -1},
			Telemetry: policy.TelemetryOptions{ApplicationID: "kvaudit"},
			Transport: transport,
		})
	return &EventGrid{endpoint: u.String(), pl: pl}, nil
}

// Name implements Sink.
func (g *EventGrid) Name() string { return "eventgrid" }

// Target implements Sink.
func (g *EventGrid) Target() string { return hostOf(g.endpoint) }

// Send implements Sink.
func (g *EventGrid) Send(ctx context.Context, a *Alert, _ time.Time) error {
	body, err := json.Marshal([]CloudEvent{cloudEvent(a)})
	if err != nil {
		return &SendError{Permanent: true, Reason: "cannot encode the alert: " + err.Error()}
	}
	req, err := runtime.NewRequest(ctx, http.MethodPost, g.endpoint)
	if err != nil {
		return &SendError{Permanent: true, Reason: "cannot build the request (check the topic endpoint setting)"}
	}
	if err := req.SetBody(streaming.NopCloser(bytes.NewReader(body)), ContentTypeCloudEventBatch); err != nil {
		return &SendError{Permanent: true, Reason: err.Error()}
	}
	resp, err := g.pl.Do(req)
	if err != nil {
		var ue *url.Error
		var ne net.Error
		if ctx.Err() != nil || errors.As(err, &ue) || errors.As(err, &ne) {
			return &SendError{Reason: describe(ctx, err)}
		}
		// The token request failed (the identity endpoint, or Entra).
		return &SendError{Reason: "no Microsoft Entra token for Event Grid: " + shorten(err.Error(), 300)}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return &SendError{Status: resp.StatusCode, Reason: fmt.Sprintf("answered %d: check that the app's identity holds EventGrid Data Sender on the topic (role assignments take minutes to apply)", resp.StatusCode)}
	}
	return statusError(resp.StatusCode)
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
