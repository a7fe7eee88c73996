// Package azstore builds kvaudit's Azure Storage clients from account
// settings, once, and turns storage errors into kvaudit's own meanings at
// the edge: not found, already exists, changed by someone else, out of
// range, transient, access refused. Callers above this package test those
// with errors.Is and never look at HTTP codes.
package azstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/kvaudit/kvaudit/internal/config"
)

// ApplicationID tags every request's User-Agent, so storage logs show
// which requests are kvaudit's.
const ApplicationID = "kvaudit"

// Errors with our meaning. Wrapped errors keep the SDK's error in the chain
// for logs.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrConflict     = errors.New("changed by another writer") // If-Match failed
	ErrInvalidRange = errors.New("range not satisfiable")
	ErrTransient    = errors.New("storage unavailable")
	// ErrTableNotFound is a missing table; it is also ErrNotFound, so a
	// read may take it as "nothing there", but a write must create the
	// table again (index.Tables does) rather than skip.
	ErrTableNotFound = errors.New("table not found")
	// ErrRejected is an entity or request the service will never accept as
	// sent (too large, invalid property or value): no retry can fix it.
	ErrRejected = errors.New("rejected as invalid")
	// ErrAuth: no token could be had for the account, or the account
	// refused the identity, key or SAS (401, 403). It is also ErrTransient,
	// so every path that waits for storage waits for it too: nothing is
	// wrong with the blob, the row or the query, and a retry succeeds once
	// the setting, the identity or its role is fixed — role assignments
	// take minutes to apply. Errors with this meaning are *AuthError,
	// naming the setting to check, when they come from this package's
	// clients.
	ErrAuth error = authSentinel{}
)

type authSentinel struct{}

func (authSentinel) Error() string        { return "storage access refused" }
func (authSentinel) Is(target error) bool { return target == ErrTransient }

// AuthError is an ErrAuth from one account: which setting, what to check.
type AuthError struct {
	Setting string // the account's setting, e.g. AuditLogsStorage
	// Check says what to look at, naming settings but never their values,
	// so that it can be shown to an API caller.
	Check string
	Err   error // the credential's or the service's error
}

func (e *AuthError) Error() string { return e.Setting + ": " + e.Check + ": " + e.Err.Error() }

// Unwrap gives errors.Is ErrAuth (hence ErrTransient) and errors.As the
// credential's or the service's error.
func (e *AuthError) Unwrap() []error { return []error{ErrAuth, e.Err} }

// rejectedCodes are the Table service error codes that say the entity
// itself is at fault, so that sending it again can never succeed. Every
// other failure is the storage's state (a missing table, access,
// throttling) and must not cost a row.
var rejectedCodes = map[string]bool{
	string(aztables.EntityTooLarge):               true,
	string(aztables.PropertyValueTooLarge):        true,
	string(aztables.PropertyNameTooLong):          true,
	string(aztables.PropertyNameInvalid):          true,
	string(aztables.TooManyProperties):            true,
	string(aztables.DuplicatePropertiesSpecified): true,
	string(aztables.PropertiesNeedValue):          true,
	string(aztables.InvalidValueType):             true,
	string(aztables.InvalidInput):                 true,
	string(aztables.OutOfRangeInput):              true,
	"RequestBodyTooLarge":                         true,
	"KeyValueTooLarge":                            true,
}

// Clients are built once at start and shared; the SDK clients are safe for
// concurrent use.
type Clients struct {
	Blob  *azblob.Client // the first logs account (AuditLogsStorage)
	Table *aztables.ServiceClient
	// Logs are the blob clients of every logs account, by account name
	// (config.LogsAccount.Name), the first one included.
	Logs map[string]*azblob.Client
}

// maxRetries is azcore's retry count for every client; tests of failure
// paths lower it.
var maxRetries int32 = 5

// DefaultTryTimeout is how long one try of a request may take when the
// setting StorageTryTimeoutSeconds is not given. azcore's try timeout runs
// until the response body is closed, not until its headers arrive
// (runtime/policy_retry.go, contextCancelReadCloser), so it bounds a whole
// blob range read too: 60 s for at most 4 MiB.
const DefaultTryTimeout = 60 * time.Second

// clientOptions: azcore's retry policy (exponential, honours Retry-After on
// 429/503) instead of hand-written loops, each try bounded by tryTimeout
// (DefaultTryTimeout when 0), 401/403 turned into an *AuthError naming a's
// setting, and the shared transport.
func clientOptions(a config.Account, service string, tryTimeout time.Duration) azcore.ClientOptions {
	if tryTimeout <= 0 {
		tryTimeout = DefaultTryTimeout
	}
	return azcore.ClientOptions{
		Retry: policy.RetryOptions{
			MaxRetries:    maxRetries,
			TryTimeout:    tryTimeout,
			RetryDelay:    200 * time.Millisecond,
			MaxRetryDelay: 10 * time.Second,
		},
		Telemetry:       policy.TelemetryOptions{ApplicationID: ApplicationID},
		PerCallPolicies: []policy.Policy{refusedPolicy{check: refusedCheck(a, service), setting: a.Setting}},
		Transport:       transport(),
	}
}

// refusedPolicy turns the service's 401 or 403 into an *AuthError: the
// setting to check travels with the error, so that the handler can name it.
// It runs per call, after azcore's retries (which never retry these).
type refusedPolicy struct{ setting, check string }

func (p refusedPolicy) Do(req *policy.Request) (*http.Response, error) {
	resp, err := req.Next()
	if err == nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
		return nil, &AuthError{Setting: p.setting, Check: p.check, Err: runtime.NewResponseError(resp)}
	}
	return resp, err
}

// refusedCheck says what to check when the service refuses a's credential.
func refusedCheck(a config.Account, service string) string {
	switch {
	case a.Identity:
		// The roles infra/ grants: the host's blob trigger on the same
		// connection needs Owner on the logs account, not just Reader.
		role := map[string]string{"blob": "Storage Blob Data Owner", "table": "Storage Table Data Contributor"}[service]
		return fmt.Sprintf("the storage account refused the identity: check that it holds %s on the account of %s__%sServiceUri (role assignments take minutes to apply)", role, a.Setting, service)
	case a.SAS != "":
		return fmt.Sprintf("the storage account refused the SharedAccessSignature of %s: check its expiry, services and permissions", a.Setting)
	default:
		return fmt.Sprintf("the storage account refused the AccountKey of %s", a.Setting)
	}
}

// identityRetry bounds the managed identity's own retries to about a
// second (azcore's default, 3 retries from 800 ms, waits ~9 s on an endpoint
// that refuses connections). The endpoint is local to the worker and a
// failure there is not fixed in seconds; the caller retries the whole
// operation anyway — the host re-delivers an invocation answered 503, the
// API tells its callers Retry-After — and a token, once had, is cached
// for hours and renewed well before it expires.
var identityRetry = policy.RetryOptions{
	MaxRetries:    2,
	RetryDelay:    200 * time.Millisecond,
	MaxRetryDelay: time.Second,
	TryTimeout:    15 * time.Second,
}

// credential returns the azidentity credential an identity-based account
// asks for, its failures turned into *AuthError naming a's settings. It
// does no network I/O: tokens are fetched on first use.
func credential(a config.Account) (azcore.TokenCredential, error) {
	// A client id only makes sense for a user-assigned managed identity, so
	// it selects ManagedIdentityCredential even without __credential.
	var (
		cred  azcore.TokenCredential
		check string
		err   error
	)
	switch {
	case a.Credential == "managedidentity" || a.ClientID != "":
		opts := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: azcore.ClientOptions{Retry: identityRetry}}
		if a.ClientID != "" {
			opts.ID = azidentity.ClientID(a.ClientID)
			check = fmt.Sprintf("no token from the managed identity: check that %s__clientId is the client id of a user-assigned identity assigned to this app, and that the app's identity endpoint (IDENTITY_ENDPOINT) answers", a.Setting)
		} else {
			check = fmt.Sprintf("no token from the app's system-assigned managed identity: turn it on, or set %s__clientId to a user-assigned identity's client id", a.Setting)
		}
		cred, err = azidentity.NewManagedIdentityCredential(opts)
	default:
		check = fmt.Sprintf("no token from DefaultAzureCredential: in Azure set %s__credential=managedidentity and %s__clientId; on a workstation sign in with az login", a.Setting, a.Setting)
		cred, err = azidentity.NewDefaultAzureCredential(nil)
	}
	if err != nil {
		return nil, err
	}
	return accountCredential{cred: cred, setting: a.Setting, check: check}, nil
}

// accountCredential gives a credential's failures our meaning.
type accountCredential struct {
	cred           azcore.TokenCredential
	setting, check string
}

func (c accountCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := c.cred.GetToken(ctx, opts)
	if err != nil && ctx.Err() == nil {
		err = &AuthError{Setting: c.setting, Check: c.check, Err: err}
	}
	return tok, err
}

// NewBlobClient builds the blob service client for a, its requests tried
// for DefaultTryTimeout each. It does no network I/O.
func NewBlobClient(a config.Account) (*azblob.Client, error) { return newBlobClient(a, 0) }

func newBlobClient(a config.Account, tryTimeout time.Duration) (*azblob.Client, error) {
	if a.BlobURL == "" {
		return nil, fmt.Errorf("azstore: %s has no blob endpoint", a.Setting)
	}
	opts := &azblob.ClientOptions{ClientOptions: clientOptions(a, "blob", tryTimeout)}
	switch {
	case a.Identity:
		cred, err := credential(a)
		if err != nil {
			return nil, fmt.Errorf("azstore: %s: credential: %w", a.Setting, err)
		}
		return azblob.NewClient(a.BlobURL+"/", cred, opts)
	case a.Key != "":
		cred, err := service.NewSharedKeyCredential(a.Name, a.Key)
		if err != nil {
			return nil, fmt.Errorf("azstore: %s: account key is not valid base64", a.Setting)
		}
		return azblob.NewClientWithSharedKeyCredential(a.BlobURL+"/", cred, opts)
	default:
		return azblob.NewClientWithNoCredential(a.BlobURL+"/?"+a.SAS, opts)
	}
}

// NewTableClient builds the table service client for a, its requests tried
// for DefaultTryTimeout each. It does no network I/O.
func NewTableClient(a config.Account) (*aztables.ServiceClient, error) { return newTableClient(a, 0) }

func newTableClient(a config.Account, tryTimeout time.Duration) (*aztables.ServiceClient, error) {
	if a.TableURL == "" {
		return nil, fmt.Errorf("azstore: %s has no table endpoint", a.Setting)
	}
	opts := &aztables.ClientOptions{ClientOptions: clientOptions(a, "table", tryTimeout)}
	switch {
	case a.Identity:
		cred, err := credential(a)
		if err != nil {
			return nil, fmt.Errorf("azstore: %s: credential: %w", a.Setting, err)
		}
		return aztables.NewServiceClient(a.TableURL+"/", cred, opts)
	case a.Key != "":
		cred, err := aztables.NewSharedKeyCredential(a.Name, a.Key)
		if err != nil {
			return nil, fmt.Errorf("azstore: %s: account key is not valid base64", a.Setting)
		}
		return aztables.NewServiceClientWithSharedKey(a.TableURL+"/", cred, opts)
	default:
		return aztables.NewServiceClientWithNoCredential(a.TableURL+"/?"+a.SAS, opts)
	}
}

// New builds the clients of every account from the settings, their
// requests tried for s.TryTimeout each. It does no network I/O, so it is
// cheap enough for start-up.
func New(s *config.Settings) (*Clients, error) {
	b, err := newBlobClient(s.Logs, s.TryTimeout)
	if err != nil {
		return nil, err
	}
	t, err := newTableClient(s.Index, s.TryTimeout)
	if err != nil {
		return nil, err
	}
	c := &Clients{Blob: b, Table: t, Logs: map[string]*azblob.Client{}}
	for _, l := range s.LogsAccounts {
		if l.First {
			c.Logs[l.Name] = b
			continue
		}
		if c.Logs[l.Name], err = newBlobClient(l.Account, s.TryTimeout); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Classify maps a storage error to one of this package's errors, wrapping
// the original; nil stays nil and an unrecognised error is returned as is.
// A context cancellation is returned as is: it is the caller's decision, not
// the storage's state.
func Classify(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrAuth) {
		return err
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		code := re.ErrorCode
		switch {
		case re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden:
			// From a client built elsewhere: refusedPolicy did not name the setting.
			return fmt.Errorf("%w: %w", ErrAuth, err)
		case re.StatusCode == http.StatusNotFound && code == string(aztables.TableNotFound):
			return fmt.Errorf("%w: %w: %w", ErrTableNotFound, ErrNotFound, err)
		case re.StatusCode == http.StatusNotFound:
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		case re.StatusCode == http.StatusPreconditionFailed || code == string(aztables.UpdateConditionNotSatisfied):
			return fmt.Errorf("%w: %w", ErrConflict, err)
		case re.StatusCode == http.StatusConflict && (code == string(aztables.EntityAlreadyExists) || code == string(aztables.TableAlreadyExists) || strings.HasSuffix(code, "AlreadyExists")):
			return fmt.Errorf("%w: %w", ErrExists, err)
		case re.StatusCode == http.StatusRequestedRangeNotSatisfiable:
			return fmt.Errorf("%w: %w", ErrInvalidRange, err)
		case re.StatusCode == http.StatusTooManyRequests || re.StatusCode >= 500 || re.StatusCode == http.StatusRequestTimeout:
			return fmt.Errorf("%w: %w", ErrTransient, err)
		case code == string(aztables.TableBeingDeleted):
			// A deleted table's name is unusable for a while: come back later.
			return fmt.Errorf("%w: %w", ErrTransient, err)
		case (re.StatusCode == http.StatusBadRequest || re.StatusCode == http.StatusRequestEntityTooLarge) && rejectedCodes[code]:
			return fmt.Errorf("%w: %w", ErrRejected, err)
		}
		return err
	}
	// A transport error quotes the request URL, whose query holds the
	// signature when the account uses a SAS: keep only scheme, host, path.
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%w: %s %s: %w", ErrTransient, ue.Op, redactURL(ue.URL), ue.Err)
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &ne) || errors.As(err, &oe) {
		return fmt.Errorf("%w: %w", ErrTransient, err)
	}
	return err
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(url)"
	}
	if u.RawQuery != "" {
		u.RawQuery = "REDACTED"
	}
	u.User = nil
	return u.String()
}

// ErrorCode is the storage error code in err's chain ("TableNotFound",
// "PropertyValueTooLarge", …), or "" when it carries none.
func ErrorCode(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

// IsTransient reports whether err means the storage could not be reached,
// asked us to come back later or refused our credentials (ErrAuth): the
// only failures worth a host retry.
func IsTransient(err error) bool {
	return errors.Is(Classify(err), ErrTransient)
}
