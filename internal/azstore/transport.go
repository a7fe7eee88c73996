package azstore

import (
	"crypto/tls"
	"net/http"
	"sync"
)

// idleConnsPerHost is how many idle connections to one storage endpoint
// the clients keep for reuse. azcore's default client keeps 10, fewer than
// kvaudit has in flight to one account (a query page's point reads, 16,
// times the requests served at once; ingest's transactions): every
// request past the tenth then closed its connection on return, and the
// next wave dialled (and, in Azure, did a TLS handshake) again.
const idleConnsPerHost = 128

// transport is the one HTTP client every storage client of the process
// shares: Go's default transport (proxy from the environment, HTTP/2 where
// offered, the timeouts azcore also uses) with azcore's TLS settings and
// connections kept for reuse as above. Built on first use: no I/O.
var transport = sync.OnceValue(func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 4 * idleConnsPerHost
	t.MaxIdleConnsPerHost = idleConnsPerHost
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, Renegotiation: tls.RenegotiateFreelyAsClient}
	return &http.Client{Transport: t}
})
