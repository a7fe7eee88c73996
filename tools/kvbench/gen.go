package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/kvaudit/kvaudit/internal/parse"
)

// The generator writes realistic Key Vault audit records: the 32 samples in
// internal/parse/testdata, each with its time, vault, caller, IP, object
// name and correlation id replaced, drawn from a seeded PRNG so that every
// run writes the same bytes. A vault has a fixed population of callers
// (object id, UPN, app id), their IPs and its objects, drawn with skew, as
// a real vault has a few busy identities and many quiet ones.

// sampleFile is the corpus the records are made from.
const sampleFile = "internal/parse/testdata/sekoia-intake-formats-keyvault.jsonl"

// Slot markers in a template. Each marks where a value is written.
const (
	slotTime     = 'T'
	slotCorr     = 'C'
	slotResource = 'R' // the whole resourceId value
	slotHost     = 'H' // <vault>.vault.azure.net
	slotObject   = 'N' // secret, key or certificate name
	slotOID      = 'O'
	slotUPN      = 'U'
	slotAppID    = 'A'
	slotIP       = 'I'
)

var slotRules = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`"time":"[^"]*"`), "\"time\":\"\x00T\x00\""},
	{regexp.MustCompile(`"correlationId":"[^"]*"`), "\"correlationId\":\"\x00C\x00\""},
	{regexp.MustCompile(`"resourceId":"[^"]*"`), "\"resourceId\":\"\x00R\x00\""},
	{regexp.MustCompile(`https://[A-Za-z0-9-]+\.vault\.azure\.net`), "https://\x00H\x00"},
	{regexp.MustCompile(`/(secrets|keys|certificates|deletedsecrets|deletedkeys|deletedcertificates)/[A-Za-z0-9-]+`), "/${1}/\x00N\x00"},
	{regexp.MustCompile(`"(oid|http://schemas.microsoft.com/identity/claims/objectidentifier)":"[^"]*"`), "\"${1}\":\"\x00O\x00\""},
	{regexp.MustCompile(`"(upn|unique_name|http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn|http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name)":"[^"]*"`), "\"${1}\":\"\x00U\x00\""},
	{regexp.MustCompile(`"appid":"[^"]*"`), "\"appid\":\"\x00A\x00\""},
	{regexp.MustCompile(`"(callerIpAddress|ipaddr)":"[^"]*"`), "\"${1}\":\"\x00I\x00\""},
}

// template is one sample record cut at its slots: lit[0] slot[0] lit[1] …
type template struct {
	lit    [][]byte
	slot   []byte
	weight int
}

// opWeight makes the mix look like a production vault's: mostly reads.
func opWeight(line []byte) int {
	switch {
	case bytes.Contains(line, []byte(`"operationName":"SecretGet"`)):
		return 12
	case bytes.Contains(line, []byte(`"operationName":"KeyGet"`)), bytes.Contains(line, []byte(`"operationName":"VaultGet"`)):
		return 4
	case bytes.Contains(line, []byte(`"operationName":"SecretList"`)), bytes.Contains(line, []byte(`"operationName":"KeyList"`)):
		return 2
	}
	return 1
}

// loadTemplates reads the sample corpus under root, the module root.
func loadTemplates(root string) ([]template, error) {
	data, err := os.ReadFile(filepath.Join(root, sampleFile))
	if err != nil {
		return nil, fmt.Errorf("generator: %w", err)
	}
	var ts []template
	for _, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		w := opWeight(line)
		for _, r := range slotRules {
			line = r.re.ReplaceAll(line, []byte(r.repl))
		}
		parts := bytes.Split(line, []byte{0})
		t := template{weight: w}
		for i, p := range parts {
			if i%2 == 0 {
				t.lit = append(t.lit, p)
			} else {
				if len(p) != 1 {
					return nil, fmt.Errorf("generator: bad slot %q", p)
				}
				t.slot = append(t.slot, p[0])
			}
		}
		if len(t.slot) == 0 || !bytes.Contains(line, []byte("\x00T\x00")) {
			return nil, fmt.Errorf("generator: sample without a time: %.80s", line)
		}
		ts = append(ts, t)
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("generator: no samples in %s", sampleFile)
	}
	return ts, nil
}

// caller is one identity that uses a vault.
type caller struct {
	oid, upn, app string
	ips           []string
}

// vaultGen writes the records of one vault.
type vaultGen struct {
	name       string // lower case
	resourceID string
	host       string
	callers    []caller
	objects    []string
	templates  []template
	pick       []int // template index by weight
	rng        *rand.Rand
	zCaller    *rand.Zipf
	zObject    *rand.Zipf
	n          uint64
}

const subscription = "8C1A4E0B-5D2F-4B7A-9E33-0F6A2C9D1B47"

// newVaultGen returns the generator of vault name, seeded from seed and the
// name: the same arguments always give the same records.
func newVaultGen(ts []template, name string, seed uint64) *vaultGen {
	h := uint64(14695981039346656037)
	for _, c := range []byte(name) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	rng := rand.New(rand.NewPCG(seed, h))
	g := &vaultGen{
		name:       strings.ToLower(name),
		resourceID: "/SUBSCRIPTIONS/" + subscription + "/RESOURCEGROUPS/RG-AUDIT-BENCH/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/" + strings.ToUpper(name),
		host:       strings.ToLower(name) + ".vault.azure.net",
		templates:  ts,
		rng:        rng,
	}
	// Identities come from one pool per seed, so that some callers (a
	// backup job, an operator) use every vault: a caller query across
	// vaults finds them in each.
	pool := identityPool(seed)
	g.callers = append(g.callers, pool[:sharedCallers]...)
	for _, i := range rng.Perm(len(pool) - sharedCallers)[:vaultCallers-sharedCallers] {
		g.callers = append(g.callers, pool[sharedCallers+i])
	}
	rng.Shuffle(len(g.callers), func(i, j int) { g.callers[i], g.callers[j] = g.callers[j], g.callers[i] })
	kinds := []string{"db-password", "api-key", "tls-cert", "signing-key", "conn-string", "client-secret"}
	for i := 0; i < 300; i++ {
		g.objects = append(g.objects, fmt.Sprintf("%s-%03d", kinds[i%len(kinds)], i))
	}
	for i, t := range ts {
		for range t.weight {
			g.pick = append(g.pick, i)
		}
	}
	g.zCaller = rand.NewZipf(rng, 1.3, 2, uint64(len(g.callers)-1))
	g.zObject = rand.NewZipf(rng, 1.1, 4, uint64(len(g.objects)-1))
	return g
}

// Callers: a vault's 40 callers are the 10 shared ones and 30 of the 50
// others.
const (
	poolCallers   = 60
	sharedCallers = 10
	vaultCallers  = 40
)

// identityPool returns the callers of every vault of seed.
func identityPool(seed uint64) []caller {
	rng := rand.New(rand.NewPCG(seed, 0))
	apps := make([]string, 6)
	for i := range apps {
		apps[i] = uuid(rng)
	}
	pool := make([]caller, poolCallers)
	for i := range pool {
		c := caller{oid: uuid(rng), app: apps[rng.IntN(len(apps))]}
		if i%4 == 0 {
			c.upn = fmt.Sprintf("user%02d@contoso.onmicrosoft.com", i) // a person
		} else {
			c.upn = fmt.Sprintf("svc-%02d@contoso.onmicrosoft.com", i) // a workload
		}
		for range 1 + rng.IntN(3) {
			c.ips = append(c.ips, fmt.Sprintf("10.%d.%d.%d", rng.IntN(4), rng.IntN(256), 1+rng.IntN(254)))
		}
		pool[i] = c
	}
	return pool
}

// sharedCaller is the object id of a caller of every vault of seed.
func sharedCaller(seed uint64) string { return identityPool(seed)[0].oid }

func uuid(rng *rand.Rand) string {
	a, b := rng.Uint64(), rng.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", a>>32, a>>16&0xffff, a&0xfff, 0x8000|b>>48&0x3fff, b&0xffffffffffff)
}

// appendRecord appends one record at t and its line end to dst.
func (g *vaultGen) appendRecord(dst []byte, t time.Time) []byte {
	g.n++
	tp := &g.templates[g.pick[g.rng.IntN(len(g.pick))]]
	c := &g.callers[g.zCaller.Uint64()]
	ip := c.ips[g.rng.IntN(len(c.ips))]
	obj := g.objects[g.zObject.Uint64()]
	for i, lit := range tp.lit {
		dst = append(dst, lit...)
		if i == len(tp.slot) {
			break
		}
		switch tp.slot[i] {
		case slotTime:
			dst = append(dst, parse.FormatTime(t)...)
		case slotCorr:
			v := g.rng.Uint64()
			dst = fmt.Appendf(dst, "%08x-%04x-4%03x-a%03x-%012x", v>>32, v>>16&0xffff, g.n&0xfff, v&0xfff, g.n)
		case slotResource:
			dst = append(dst, g.resourceID...)
		case slotHost:
			dst = append(dst, g.host...)
		case slotObject:
			dst = append(dst, obj...)
		case slotOID:
			dst = append(dst, c.oid...)
		case slotUPN:
			dst = append(dst, c.upn...)
		case slotAppID:
			dst = append(dst, c.app...)
		case slotIP:
			dst = append(dst, ip...)
		}
	}
	return append(dst, '\n')
}

// blobName is the Azure Monitor path of the vault's blob for hour.
func (g *vaultGen) blobName(hour time.Time) string {
	hour = hour.UTC()
	return fmt.Sprintf("resourceId=%s/y=%04d/m=%02d/d=%02d/h=%02d/m=00/PT1H.json",
		g.resourceID, hour.Year(), hour.Month(), hour.Day(), hour.Hour())
}

// timeIn returns the time of record i of n in the hour starting at hour:
// in order, evenly spread, with a little jitter.
func (g *vaultGen) timeIn(hour time.Time, i, n int) time.Time {
	step := time.Hour / time.Duration(max(n, 1))
	t := hour.Add(time.Duration(i) * step)
	return t.Add(time.Duration(g.rng.Int64N(int64(step/2)+1)) / 100 * 100)
}
