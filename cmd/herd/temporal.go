package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/workflows/client"
)

// authFlags are the credentials of a secured Temporal cluster, shared by every command
// that connects to one (see temporalFlags). Each falls back to the environment variable
// that Temporal's own CLI reads, so that a shell set up for `temporal` works for herd
// too; a flag given wins over its variable.
type authFlags struct {
	cmd                               *cobra.Command
	cert, key, ca, serverName, apiKey string
}

// The environment variables of authFlags, as the Temporal CLI names them.
const (
	envCert       = "TEMPORAL_TLS_CERT"
	envKey        = "TEMPORAL_TLS_KEY"
	envCA         = "TEMPORAL_TLS_CA"
	envServerName = "TEMPORAL_TLS_SERVER_NAME"
	envAPIKey     = "TEMPORAL_API_KEY"
)

func (f *authFlags) register(c *cobra.Command) {
	f.cmd = c
	c.Flags().StringVar(&f.cert, "tls-cert", os.Getenv(envCert), "PEM client certificate for the Temporal server (mTLS; default $"+envCert+")")
	c.Flags().StringVar(&f.key, "tls-key", os.Getenv(envKey), "PEM private key of --tls-cert (default $"+envKey+")")
	c.Flags().StringVar(&f.ca, "tls-ca", os.Getenv(envCA), "PEM CA of the Temporal server's certificate; alone, TLS without a client certificate (default $"+envCA+", else the system's roots)")
	c.Flags().StringVar(&f.serverName, "tls-server-name", os.Getenv(envServerName), "name the Temporal server's certificate must carry, if not the --temporal host (default $"+envServerName+")")
	// The key is not the flag's default: --help would print it.
	c.Flags().StringVar(&f.apiKey, "api-key", "", "Temporal Cloud API key, sent over TLS (default $"+envAPIKey+", better than this flag, which ps shows)")
}

// auth is the credentials the flags and environment give.
func (f *authFlags) auth() client.Auth {
	file := func(flag, env, path string) client.File {
		from := "--" + flag
		if !f.cmd.Flags().Changed(flag) {
			from = "$" + env
		}
		return client.File{Path: path, From: from}
	}
	key := f.apiKey
	if !f.cmd.Flags().Changed("api-key") {
		key = os.Getenv(envAPIKey)
	}
	return client.Auth{
		Cert:       file("tls-cert", envCert, f.cert),
		Key:        file("tls-key", envKey, f.key),
		CA:         file("tls-ca", envCA, f.ca),
		ServerName: f.serverName,
		APIKey:     key,
	}
}

// firstEnv is the first of the environment variables names that is set, or def.
func firstEnv(def string, names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return def
}
