package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"

	sdkclient "go.temporal.io/sdk/client"

	"github.com/herdml/herd/internal/usererr"
)

// Auth is how herd proves itself to a secured Temporal cluster and checks that the
// cluster is the one meant: mutual TLS with a client certificate (self-hosted clusters,
// Temporal Cloud's mTLS namespaces), or an API key (Temporal Cloud), or TLS alone. The
// zero value is plain gRPC, as herd's embedded server speaks unless `herd server` was
// given certificates.
type Auth struct {
	Cert File // PEM client certificate; with Key, presented to the server (mTLS)
	Key  File // PEM private key of Cert
	// CA is the PEM CA bundle the server's certificate must chain to; empty trusts the
	// system's roots (enough for Temporal Cloud).
	CA File
	// ServerName is the name the server's certificate must carry, when it is not the host
	// of the address dialled (a load balancer's IP, a tunnel).
	ServerName string
	// APIKey is sent as a bearer token on every call (Temporal Cloud API keys). A key
	// sent in clear could be read off the wire, so it always goes over TLS.
	APIKey string
}

// File is a file the user named, and how (--tls-cert, $TEMPORAL_TLS_CERT), so that an
// error about it names both.
type File struct {
	Path string
	From string
}

// TLS reports whether a connection with a uses TLS: any certificate, CA, server name or
// API key asks for it.
func (a Auth) TLS() bool {
	return a.Cert.Path != "" || a.Key.Path != "" || a.CA.Path != "" || a.ServerName != "" || a.APIKey != ""
}

// options turns a into the SDK's connection options and credentials, reading its files
// now: a missing or unreadable file, a key that does not match its certificate, or a
// certificate without its key is a user error naming the flag (or variable) and file.
func (a Auth) options() (sdkclient.ConnectionOptions, sdkclient.Credentials, error) {
	var conn sdkclient.ConnectionOptions
	if !a.TLS() {
		return conn, nil, nil
	}
	conn.TLS = &tls.Config{ServerName: a.ServerName, MinVersion: tls.VersionTLS12}
	if a.CA.Path != "" {
		pem, err := read(a.CA)
		if err != nil {
			return conn, nil, err
		}
		conn.TLS.RootCAs = x509.NewCertPool()
		if !conn.TLS.RootCAs.AppendCertsFromPEM(pem) {
			return conn, nil, usererr.New(a.CA.From+" "+a.CA.Path, "no PEM certificate in it; give the CA that signed the Temporal server's certificate")
		}
	}
	switch {
	case a.Cert.Path == "" && a.Key.Path == "":
	case a.Cert.Path == "" || a.Key.Path == "":
		return conn, nil, usererr.New(a.Cert.From+"/"+a.Key.From, "a client certificate needs its key: give both, or neither for TLS without one")
	default:
		certPEM, err := read(a.Cert)
		if err != nil {
			return conn, nil, err
		}
		keyPEM, err := read(a.Key)
		if err != nil {
			return conn, nil, err
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return conn, nil, usererr.New(a.Cert.From+" "+a.Cert.Path+", "+a.Key.From+" "+a.Key.Path, "not a PEM certificate and its key: %v", err)
		}
		conn.TLS.Certificates = []tls.Certificate{cert}
	}
	if a.APIKey == "" {
		return conn, nil, nil
	}
	return conn, sdkclient.NewAPIKeyStaticCredentials(a.APIKey), nil
}

// read reads f, or says which flag named the file that cannot be read.
func read(f File) ([]byte, error) {
	b, err := os.ReadFile(f.Path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the message already
		}
		return nil, usererr.New(f.From+" "+f.Path, "cannot read it: %v", err)
	}
	return b, nil
}
