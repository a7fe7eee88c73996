package azuritetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// selfSigned is a certificate for 127.0.0.1 and localhost that is its own
// root, made for one Azurite: trusting it trusts nothing else.
type selfSigned struct {
	certPEM, keyPEM []byte
	pool            *x509.CertPool
}

func newSelfSigned() (*selfSigned, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("azuritetest: certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("azuritetest: certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "azuritetest " + now.UTC().Format(time.RFC3339)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("azuritetest: certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("azuritetest: certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("azuritetest: certificate key: %w", err)
	}
	s := &selfSigned{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		pool:    x509.NewCertPool(),
	}
	s.pool.AddCert(cert)
	return s, nil
}

// write puts the certificate and key in dir as cert.pem and key.pem (the key
// readable by the owner only) and returns their paths.
func (s *selfSigned) write(dir string) (certFile, keyFile string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("azuritetest: certificate directory: %w", err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, s.certPEM, 0o644); err != nil {
		return "", "", fmt.Errorf("azuritetest: %w", err)
	}
	if err := os.WriteFile(keyFile, s.keyPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("azuritetest: %w", err)
	}
	return certFile, keyFile, nil
}

// HTTPClient returns an HTTP client for this Azurite: with HTTPS, one that
// trusts its certificate and nothing else; without, http.DefaultClient.
// An *http.Client is an azcore policy.Transporter, so it goes in an SDK
// client's ClientOptions.Transport.
func (a *Azurite) HTTPClient() *http.Client {
	if a.tls == nil {
		return http.DefaultClient
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: a.tls.pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}
}
