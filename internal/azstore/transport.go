package azstore

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"
)

// idleConnsPerHost is how many idle connections to one storage endpoint
// the clients keep for reuse. azcore's default client keeps 10, fewer than
// kvaudit has in flight to one account (a query page's point reads, 16,
// times the requests served at once; ingest's transactions): every
// request past the tenth then closed its connection on return, and the
// next wave dialled (and, in Azure, did a TLS handshake) again.
const idleConnsPerHost = 128

// transport is the one HTTP client every storage client of the process
// shares: azcore's defaults (proxy from the environment, TLS 1.2 or later,
// HTTP/2 where offered, the same timeouts) with connections kept for reuse
// as above.
var transport = sync.OnceValue(func() *http.Client {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          4 * idleConnsPerHost,
		MaxIdleConnsPerHost:   idleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig: &tls.Config{
			MinVersion:    tls.VersionTLS12,
			Renegotiation: tls.RenegotiateFreelyAsClient,
		},
	}}
})
