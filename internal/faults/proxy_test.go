package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/parse"
	"github.com/kvaudit/kvaudit/internal/query"
)

// proxy is a loopback reverse proxy between the handler and one Azurite
// endpoint. It records every table write Azurite acknowledged, and lets a
// case act at an exact point of the traffic through its hooks. Azurite's
// ports survive a restart, so one proxy serves across restarts.
//
// A request it cannot forward (Azurite down, or the proxy set down) is
// answered by dropping the connection, as an unreachable server would be.
type proxy struct {
	URL    string // http://127.0.0.1:<port>/devstoreaccount1
	target *url.URL
	srv    *http.Server

	// down drops every request unforwarded: storage unreachable.
	down atomic.Bool

	// Hooks, set before the handler starts and never changed after; each
	// may run on many goroutines at once.
	//
	// before runs when a request's body is read, before it is forwarded.
	before func(x *exchange)
	// after runs once the response status (and for a table write, whether
	// it was acknowledged) is known, before the handler sees the response.
	after func(x *exchange)
	// wrapBody may replace the body of a response (a blob read), to stall
	// or cut it.
	wrapBody func(x *exchange, body io.ReadCloser) io.ReadCloser

	mu          sync.Mutex
	acked       map[rowID]ackedRow // table writes Azurite acknowledged (2xx)
	checkpoints map[rowID]int64    // acknowledged checkpoint offsets, by row
	requests    int
	failed      int // non-2xx answers and requests not forwarded
}

// rowID names a table row.
type rowID struct{ Table, PK, RK string }

// ackedRow is what the proxy remembers of an acknowledged write.
type ackedRow struct {
	CorrelationID string
	Seq           int // order of acknowledgement
}

// exchange is one request through the proxy.
type exchange struct {
	Req    *http.Request
	Writes []tableWrite // parsed table writes (a batch holds several)
	Status int          // 0 until the response is known; -1 when not forwarded
	Acked  bool         // a table write Azurite acknowledged as a whole
}

// Table is the table the exchange's first write goes to ("" if none).
func (x *exchange) Table() string {
	if len(x.Writes) == 0 {
		return ""
	}
	return x.Writes[0].Table
}

// IsBlobRead reports whether the exchange reads a blob's content.
func (x *exchange) IsBlobRead() bool {
	return x.Req.Method == http.MethodGet && x.Req.URL.Query().Get("comp") == "" &&
		strings.Count(strings.Trim(x.Req.URL.Path, "/"), "/") >= 2
}

// tableWrite is one entity operation of a request.
type tableWrite struct {
	Method, Table string
	PK, RK        string
	Props         map[string]any
}

var errDown = errors.New("faults: storage set down")

// newProxy starts a proxy to target (an Azurite service URL with the
// account path); t.Cleanup closes it.
func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	account := u.Path
	u.Path = ""
	p := &proxy{target: u, acked: map[rowID]ackedRow{}, checkpoints: map[rowID]int64{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.URL = "http://" + ln.Addr().String() + account
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(p.target) },
		Transport: &recorder{p: p, next: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// An unreachable server's connection just fails; so does ours.
			panic(http.ErrAbortHandler)
		},
		ErrorLog: discardLog,
	}
	p.srv = &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second, ErrorLog: discardLog}
	go p.srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { p.srv.Close() })
	return p
}

// recorder is the proxy's transport: it reads and parses request bodies,
// runs the hooks and records acknowledged writes.
type recorder struct {
	p    *proxy
	next http.RoundTripper
}

// maxBody bounds a request body the proxy holds: a transaction is at most
// 4 MiB.
const maxBody = 8 << 20

func (rt *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	p := rt.p
	x := &exchange{Req: req}
	if req.Body != nil && req.Body != http.NoBody {
		body, err := io.ReadAll(io.LimitReader(req.Body, maxBody))
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		x.Writes = parseWrites(req, body)
	}
	p.mu.Lock()
	p.requests++
	p.mu.Unlock()
	if p.before != nil {
		p.before(x)
	}
	if p.down.Load() {
		p.fail(x)
		return nil, errDown
	}
	resp, err := rt.next.RoundTrip(req)
	if err != nil {
		p.fail(x)
		return nil, err
	}
	x.Status = resp.StatusCode
	if len(x.Writes) > 0 {
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		if err != nil {
			p.fail(x)
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		x.Acked = acknowledged(req, resp.StatusCode, body)
		p.record(x)
	}
	if resp.StatusCode >= 300 && !(req.Method == http.MethodGet && resp.StatusCode == http.StatusNotFound) {
		p.mu.Lock()
		p.failed++
		p.mu.Unlock()
	}
	if p.after != nil {
		p.after(x)
	}
	if p.wrapBody != nil {
		resp.Body = p.wrapBody(x, resp.Body)
	}
	return resp, nil
}

func (p *proxy) fail(x *exchange) {
	x.Status = -1
	p.mu.Lock()
	p.failed++
	p.mu.Unlock()
	if p.after != nil {
		p.after(x)
	}
}

// record remembers the writes of an acknowledged exchange.
func (p *proxy) record(x *exchange) {
	if !x.Acked {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range x.Writes {
		id := rowID{w.Table, w.PK, w.RK}
		if w.Method == http.MethodDelete {
			delete(p.acked, id)
			continue
		}
		corr := correlationID(w.Props, w.RK)
		p.acked[id] = ackedRow{CorrelationID: corr, Seq: len(p.acked)}
		if strings.HasPrefix(w.RK, "c|") {
			if off, ok := int64Prop(w.Props["Offset"]); ok {
				p.checkpoints[id] = off
			}
		}
	}
}

// ackedIn returns the acknowledged rows of table.
func (p *proxy) ackedIn(table string) map[rowID]ackedRow {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[rowID]ackedRow{}
	for id, r := range p.acked {
		if id.Table == table {
			out[id] = r
		}
	}
	return out
}

// ackedCheckpoints returns the last acknowledged offset of each checkpoint.
func (p *proxy) ackedCheckpoints() map[rowID]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[rowID]int64{}
	for id, off := range p.checkpoints {
		out[id] = off
	}
	return out
}

// stats returns the requests seen and those that failed.
func (p *proxy) stats() (requests, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests, p.failed
}

func int64Prop(v any) (int64, bool) {
	switch v := v.(type) {
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	case float64:
		return int64(v), true
	}
	return 0, false
}

// requestLine matches the request line of one operation inside a batch.
var requestLine = regexp.MustCompile(`^(PUT|POST|PATCH|MERGE|DELETE) (\S+) HTTP/1\.1$`)

// parseWrites lists the entity writes of a table request: a $batch body's
// operations, or the request itself. Table create/delete and reads are
// none.
func parseWrites(req *http.Request, body []byte) []tableWrite {
	if req.Method == http.MethodGet {
		return nil
	}
	if strings.HasSuffix(req.URL.Path, "/$batch") {
		var out []tableWrite
		var cur *tableWrite
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(make([]byte, 64<<10), maxBody)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			if m := requestLine.FindStringSubmatch(line); m != nil {
				u, err := url.Parse(m[2])
				if err != nil {
					continue
				}
				w, ok := writeOf(m[1], u.Path)
				if !ok {
					cur = nil
					continue
				}
				out = append(out, w)
				cur = &out[len(out)-1]
				continue
			}
			if cur != nil && strings.HasPrefix(line, "{") {
				cur.fill([]byte(line))
				cur = nil
			}
		}
		return out
	}
	w, ok := writeOf(req.Method, req.URL.Path)
	if !ok {
		return nil
	}
	if len(body) > 0 {
		w.fill(body)
	}
	return []tableWrite{w}
}

// keyInPath matches an entity path's keys.
var keyInPath = regexp.MustCompile(`\(PartitionKey='([^']*)',\s*RowKey='([^']*)'\)$`)

func writeOf(method, path string) (tableWrite, bool) {
	seg := path[strings.LastIndex(path, "/")+1:]
	table, _, _ := strings.Cut(seg, "(")
	if table == "" || strings.EqualFold(table, "Tables") || strings.HasPrefix(table, "$") {
		return tableWrite{}, false
	}
	w := tableWrite{Method: method, Table: table}
	if m := keyInPath.FindStringSubmatch(seg); m != nil {
		w.PK, _ = url.PathUnescape(strings.ReplaceAll(m[1], "''", "'"))
		w.RK, _ = url.PathUnescape(strings.ReplaceAll(m[2], "''", "'"))
	}
	return w, true
}

func (w *tableWrite) fill(body []byte) {
	var props map[string]any
	if json.Unmarshal(body, &props) != nil {
		return
	}
	w.Props = props
	if pk, ok := props["PartitionKey"].(string); ok {
		w.PK = pk
	}
	if rk, ok := props["RowKey"].(string); ok {
		w.RK = rk
	}
}

// innerStatus matches the status line of each operation in a batch answer.
var innerStatus = regexp.MustCompile(`HTTP/1\.1 (\d{3})`)

// acknowledged reports whether storage applied a write: a 2xx, and for a
// batch (202 whatever happened inside) every inner answer 2xx.
func acknowledged(req *http.Request, status int, body []byte) bool {
	if status < 200 || status > 299 {
		return false
	}
	if !strings.HasSuffix(req.URL.Path, "/$batch") {
		return true
	}
	ms := innerStatus.FindAllSubmatch(body, -1)
	if len(ms) == 0 {
		return false
	}
	for _, m := range ms {
		if m[1][0] != '2' {
			return false
		}
	}
	return true
}

// stallBody holds a response body after its first n bytes until ctx ends
// (the reader gave up: its try timeout) or limit passes, then fails.
type stallBody struct {
	body    io.ReadCloser
	n       int64
	ctx     context.Context
	limit   time.Duration
	onStall func() // called once, when the stall begins
	stalled bool
}

func (s *stallBody) Read(p []byte) (int, error) {
	if s.n <= 0 {
		if !s.stalled {
			s.stalled = true
			if s.onStall != nil {
				s.onStall()
			}
		}
		select {
		case <-s.ctx.Done():
			return 0, s.ctx.Err()
		case <-time.After(s.limit):
			return 0, errors.New("faults: stalled read released by its safety limit")
		}
	}
	if int64(len(p)) > s.n {
		p = p[:s.n]
	}
	n, err := s.body.Read(p)
	s.n -= int64(n)
	return n, err
}

func (s *stallBody) Close() error { return s.body.Close() }

// cutBody passes a response body's first n bytes, calls onCut, then fails
// as a connection reset would.
type cutBody struct {
	body  io.ReadCloser
	n     int64
	onCut func()
	cut   bool
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.n <= 0 {
		if !c.cut {
			c.cut = true
			if c.onCut != nil {
				c.onCut()
			}
		}
		return 0, io.ErrUnexpectedEOF
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.body.Read(p)
	c.n -= int64(n)
	return n, err
}

func (c *cutBody) Close() error { return c.body.Close() }

// correlationID is the correlation id of an Events row written: decoded
// from its record (layout 2 keeps it compressed in R); "" for other rows.
func correlationID(props map[string]any, rk string) string {
	if _, ok := props[index.PropRecord]; !ok {
		return ""
	}
	if _, ok := props["RowKey"]; !ok {
		props = maps.Clone(props)
		props["RowKey"] = rk // the record's offset is in it
	}
	body, err := json.Marshal(props)
	if err != nil {
		return ""
	}
	var rec parse.Record
	if err := query.DecodeRow(body, &rec); err != nil {
		return ""
	}
	return rec.CorrelationID
}
