package alert

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Sink delivers alerts somewhere. Send is one attempt: it returns nil
// once the receiver took the alert (2xx), a *SendError otherwise. A Sink
// is safe for concurrent use.
type Sink interface {
	// Name is the sink's key in state and status: webhook, teams, eventgrid.
	Name() string
	// Target says where alerts go without any secret in it (scheme and
	// host, never a path or query that may hold a key), for status.
	Target() string
	// Send delivers a once; at is the attempt's time.
	Send(ctx context.Context, a *Alert, at time.Time) error
}

// SendError is a failed attempt.
type SendError struct {
	// Status is the receiver's HTTP status, 0 when none came back.
	Status int
	// Permanent: the receiver will refuse this alert however often it is
	// sent (a 4xx other than 408 and 429): no further attempt.
	Permanent bool
	// Reason is safe to store and show: no URL, no secret.
	Reason string
}

func (e *SendError) Error() string { return e.Reason }

// maxAnswer bounds what is read of a receiver's answer (to reuse the
// connection); it is never kept.
const maxAnswer = 64 << 10

// httpClient is the sinks' client: no redirects (Standard Webhooks: a 3xx
// is a failure, the URL should be updated; following one would also send
// the signed alert somewhere nobody configured), the process's default
// transport settings.
func httpClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// post sends body to u and classifies the answer.
func post(ctx context.Context, client *http.Client, u string, header http.Header, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(string(body)))
	if err != nil {
		return &SendError{Permanent: true, Reason: "cannot build the request (check the sink's URL setting)"}
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		return &SendError{Reason: describe(ctx, err)}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	return statusError(resp.StatusCode)
}

// statusError is nil for 2xx, else the failure a status means.
func statusError(status int) error {
	if status >= 200 && status <= 299 {
		return nil
	}
	e := &SendError{Status: status, Reason: fmt.Sprintf("answered %d %s", status, http.StatusText(status))}
	switch {
	case status >= 300 && status <= 399:
		e.Reason += " (redirects are not followed: set the final URL)"
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests:
	case status >= 400 && status <= 499:
		e.Permanent = true
	}
	return e
}

// describe says why a request got no answer without quoting its URL
// (url.Error does, and a Teams or webhook URL carries its key).
func describe(ctx context.Context, err error) string {
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return "no answer in time"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "no answer in time"
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return "cannot connect: " + oe.Err.Error()
	}
	return "cannot connect: " + err.Error()
}

// hostOf is scheme://host of u, for status.
func hostOf(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return "(invalid URL)"
	}
	return p.Scheme + "://" + p.Host
}
