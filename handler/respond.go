package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
)

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may have gone; nothing to do
}

// writeError answers {"error": msg}: every API error has this shape.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// A few answers are written by net/http itself, before any handler runs:
// a request line or header it cannot parse (400), headers over the limit
// (431), a transfer coding it does not know (501), an Expect it does not
// support (417). It writes them to the connection as plain text, and
// http.Server has no hook for them. jsonErrorsListener wraps the
// listener's connections so that those answers, too, are
// {"error": …}: a connection rewrites a reply that it sees written while
// no handler has taken the current request (see [markHandled]).

// jsonErrorsListener returns ln with the rewriting described above; the
// server using it must use [withConn] as its ConnContext and
// [trackConnState] in its ConnState.
func jsonErrorsListener(ln net.Listener) net.Listener { return errorsListener{ln} }

type errorsListener struct{ net.Listener }

func (l errorsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &errorsConn{Conn: c}, nil
}

// errorsConn is one connection; handled says whether a handler took the
// request being answered. The server reads, writes and runs the handler of
// a connection on one goroutine; atomic only for the race detector's sake
// and the server's background reader.
type errorsConn struct {
	net.Conn
	handled atomic.Bool
}

type connKey struct{}

// withConn is the server's ConnContext: it lets [markHandled] find the
// connection of a request.
func withConn(ctx context.Context, c net.Conn) context.Context {
	if ec, ok := c.(*errorsConn); ok {
		return context.WithValue(ctx, connKey{}, ec)
	}
	return ctx
}

// trackConnState is the server's ConnState: a connection that starts
// reading a request (active) or has answered one (idle) has no handler
// answering.
func trackConnState(c net.Conn, s http.ConnState) {
	if ec, ok := c.(*errorsConn); ok && (s == http.StateActive || s == http.StateIdle) {
		ec.handled.Store(false)
	}
}

// markHandled records that a handler has taken r: what is written on its
// connection until the next request is the handler's answer.
func markHandled(r *http.Request) {
	if ec, ok := r.Context().Value(connKey{}).(*errorsConn); ok {
		ec.handled.Store(true)
	}
}

func (c *errorsConn) Write(p []byte) (int, error) {
	if c.handled.Load() {
		return c.Conn.Write(p)
	}
	out, ok := jsonServerError(p)
	if !ok {
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite half-closes the connection as net/http does after its
// 431 (it looks for this method on the connection it was given).
func (c *errorsConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// jsonServerError is p, a complete error reply of net/http's own (status
// line, headers, a text body), as the same status with {"error": …}; ok is
// false when p is anything else.
func jsonServerError(p []byte) (out []byte, ok bool) {
	const proto = "HTTP/1.1 "
	head, body, found := bytes.Cut(p, []byte("\r\n\r\n"))
	if !found || !bytes.HasPrefix(head, []byte(proto)) || len(head) < len(proto)+3 {
		return nil, false
	}
	code, err := strconv.Atoi(string(head[len(proto) : len(proto)+3]))
	if err != nil || code < 400 || code > 599 {
		return nil, false
	}
	text := strings.TrimSpace(string(body))
	if text == "" {
		text = fmt.Sprintf("%d %s", code, http.StatusText(code))
	}
	msg, _ := json.Marshal(map[string]string{"error": "the request could not be read as HTTP/1.1: " + text})
	msg = append(msg, '\n')
	out = fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\nContent-Length: %d\r\n\r\n",
		code, http.StatusText(code), len(msg))
	return append(out, msg...), true
}
