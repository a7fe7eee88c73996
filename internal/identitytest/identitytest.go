// Package identitytest plays the managed-identity endpoint App Service and
// Azure Functions give an app, on loopback, for tests of identity-based
// storage access against Azurite (azuritetest with Options.OAuth).
//
// The protocol is the one azidentity's ManagedIdentityCredential speaks
// when IDENTITY_ENDPOINT and IDENTITY_HEADER are set (MSAL's "AppService"
// source):
//
//	GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=https://storage.azure.com&client_id=<id>
//	X-IDENTITY-HEADER: $IDENTITY_HEADER
//
//	200 {"access_token":"<JWT>","expires_on":"<unix seconds>","resource":"…","token_type":"Bearer","client_id":"<id>"}
//
// The endpoint holds one user-assigned identity. Like the real one, it
// refuses a client id that is not assigned to the app — and, since the app
// has no system-assigned identity, a request without one — with 400
// {"statusCode":400,"message":"Unable to load the proper Managed Identity.",…}.
//
// Tokens are JWTs that Azurite's `--oauth basic` check accepts: audience
// the requested resource, an Entra issuer, iat/nbf/exp. They are signed
// with a key of this endpoint's, which nothing checks: Azurite's basic
// level does not verify signatures.
//
// An in-process credential reads IDENTITY_ENDPOINT when it is built and on
// every token request, so tests give [Endpoint.Env] to a subprocess (the
// handler binary) rather than setting the test binary's own environment.
package identitytest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Storage is the resource (token audience) Azure Storage clients ask for.
const Storage = "https://storage.azure.com"

// EventGrid is the resource an Event Grid publisher asks for (scope
// https://eventgrid.azure.net/.default): the alert sink's.
const EventGrid = "https://eventgrid.azure.net"

// APIVersion is the App Service managed-identity API version azidentity
// sends; the endpoint refuses others.
const APIVersion = "2019-08-01"

// TokenLifetime is how long a token handed out stays valid.
const TokenLifetime = time.Hour

// Endpoint is a running managed-identity endpoint. Its methods are safe
// for concurrent use.
type Endpoint struct {
	// URL is the value for IDENTITY_ENDPOINT, Secret for IDENTITY_HEADER.
	URL, Secret string
	// ClientID is the one user-assigned identity assigned to the "app";
	// PrincipalID is its object id, the token's oid claim.
	ClientID, PrincipalID string
	// Tenant is the directory the tokens' issuer names.
	Tenant string

	key []byte // signs tokens; nothing verifies it
	srv *httptest.Server

	mu       sync.Mutex
	requests []Request
	issuer   string // "" for the tenant's
}

// Request is one token request the endpoint answered.
type Request struct {
	ClientID string // client_id asked for, "" for none
	Resource string
	Status   int // the answer's HTTP status
}

// Start runs an endpoint on loopback holding one user-assigned identity
// with a fresh random client id, until the test ends.
func Start(t testing.TB) *Endpoint {
	t.Helper()
	e := &Endpoint{
		Secret:      randomHex(16),
		ClientID:    uuid(),
		PrincipalID: uuid(),
		Tenant:      uuid(),
		key:         []byte(randomHex(32)),
	}
	e.srv = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.srv.Close)
	// The path App Service uses; anything else is a 404 as there.
	e.URL = e.srv.URL + "/msi/token"
	return e
}

// SetIssuer makes the tokens handed out from now on name issuer, "" for
// the tenant's own (https://sts.windows.net/<tenant>/). A token from an
// issuer storage does not trust is refused by Azurite (403), as Azure
// Storage refuses an identity that holds no role on the account.
func (e *Endpoint) SetIssuer(issuer string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.issuer = issuer
}

// Env is the environment giving a process this endpoint:
// IDENTITY_ENDPOINT and IDENTITY_HEADER.
func (e *Endpoint) Env() []string {
	return []string{"IDENTITY_ENDPOINT=" + e.URL, "IDENTITY_HEADER=" + e.Secret}
}

// Requests returns the token requests answered so far, oldest first.
func (e *Endpoint) Requests() []Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Request(nil), e.requests...)
}

// problem answers an error in App Service's shape.
func problem(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"statusCode": status, "message": msg, "correlationId": uuid()})
}

func (e *Endpoint) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := Request{ClientID: q.Get("client_id"), Resource: q.Get("resource")}
	status := e.answer(w, r, req)
	req.Status = status
	e.mu.Lock()
	e.requests = append(e.requests, req)
	e.mu.Unlock()
}

// answer writes the response to one request and returns its status.
func (e *Endpoint) answer(w http.ResponseWriter, r *http.Request, req Request) int {
	q := r.URL.Query()
	switch {
	case r.URL.Path != "/msi/token":
		http.NotFound(w, r)
		return http.StatusNotFound
	case r.Method != http.MethodGet:
		problem(w, http.StatusMethodNotAllowed, "Only GET is supported.")
		return http.StatusMethodNotAllowed
	case !hmac.Equal([]byte(r.Header.Get("X-IDENTITY-HEADER")), []byte(e.Secret)):
		problem(w, http.StatusUnauthorized, "The X-IDENTITY-HEADER header is missing or wrong.")
		return http.StatusUnauthorized
	case q.Get("api-version") != APIVersion:
		problem(w, http.StatusBadRequest, "Unsupported api-version; this endpoint speaks "+APIVersion+".")
		return http.StatusBadRequest
	case strings.TrimSuffix(req.Resource, "/") != Storage && strings.TrimSuffix(req.Resource, "/") != EventGrid:
		problem(w, http.StatusBadRequest, "This endpoint hands out tokens for "+Storage+" and "+EventGrid+" only.")
		return http.StatusBadRequest
	case q.Has("principal_id") || q.Has("object_id") || q.Has("mi_res_id") ||
		!strings.EqualFold(req.ClientID, e.ClientID):
		// The real endpoint's answer to an identity the app does not have,
		// including the system-assigned one this app was not given.
		problem(w, http.StatusBadRequest, "Unable to load the proper Managed Identity.")
		return http.StatusBadRequest
	}
	now := time.Now()
	exp := now.Add(TokenLifetime)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"access_token": e.token(req.Resource, now, exp),
		"expires_on":   strconv.FormatInt(exp.Unix(), 10),
		"resource":     req.Resource,
		"token_type":   "Bearer",
		"client_id":    e.ClientID,
	})
	return http.StatusOK
}

// token mints a v1 access token for the endpoint's identity, the claims
// Entra puts in a managed identity's token for storage.
func (e *Endpoint) token(resource string, now, exp time.Time) string {
	e.mu.Lock()
	iss := e.issuer
	e.mu.Unlock()
	if iss == "" {
		iss = "https://sts.windows.net/" + e.Tenant + "/"
	}
	return signJWT(e.key, map[string]any{
		"aud":   resource,
		"iss":   iss,
		"iat":   now.Add(-time.Minute).Unix(), // tolerate clock skew, as Entra does
		"nbf":   now.Add(-time.Minute).Unix(),
		"exp":   exp.Unix(),
		"appid": e.ClientID,
		"oid":   e.PrincipalID,
		"sub":   e.PrincipalID,
		"tid":   e.Tenant,
		"ver":   "1.0",
	})
}

// Verify checks that token is one this endpoint handed out, for
// resource, not expired: its signature (the endpoint's key), audience and
// times. A receiver in a test plays the service that checks the token.
func (e *Endpoint) Verify(token, resource string) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return fmt.Errorf("identitytest: not a JWT")
	}
	mac := hmac.New(sha256.New, e.key)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		return fmt.Errorf("identitytest: bad signature")
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return fmt.Errorf("identitytest: bad claims")
	}
	var claims struct {
		Aud string `json:"aud"`
		Exp int64  `json:"exp"`
		Oid string `json:"oid"`
	}
	if err := json.Unmarshal(body, &claims); err != nil {
		return fmt.Errorf("identitytest: bad claims: %w", err)
	}
	switch {
	case strings.TrimSuffix(claims.Aud, "/") != strings.TrimSuffix(resource, "/"):
		return fmt.Errorf("identitytest: token for %q, want %q", claims.Aud, resource)
	case time.Now().Unix() >= claims.Exp:
		return fmt.Errorf("identitytest: token expired")
	case claims.Oid != e.PrincipalID:
		return fmt.Errorf("identitytest: token of another identity")
	}
	return nil
}

// Token mints a token like the endpoint's for resource, valid from now for
// ttl (negative for one already expired), for tests that hand a token to an
// SDK client directly.
func Token(resource string, ttl time.Duration) string {
	now := time.Now()
	tenant := uuid()
	return signJWT([]byte(randomHex(32)), map[string]any{
		"aud": resource,
		"iss": "https://sts.windows.net/" + tenant + "/",
		"iat": now.Add(-time.Minute).Unix(),
		"nbf": now.Add(-time.Minute).Unix(),
		"exp": now.Add(ttl).Unix(),
		"tid": tenant,
		"ver": "1.0",
	})
}

func signJWT(key []byte, claims map[string]any) string {
	enc := base64.RawURLEncoding
	header, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT"})
	body, err := json.Marshal(claims)
	if err != nil {
		panic(fmt.Sprintf("identitytest: claims: %v", err)) // only strings and numbers
	}
	signed := enc.EncodeToString(header) + "." + enc.EncodeToString(body)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(mac.Sum(nil))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// uuid returns a random (version 4) UUID, the shape of Entra ids.
func uuid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
