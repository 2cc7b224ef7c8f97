package ca

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
)

// LoadChain reads the hierarchy's certificates (issuing CA first, root
// last) from dataDir without touching its keys, for tools that only verify.
func LoadChain(dataDir string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(filepath.Join(caDir(dataDir), chainFile))
	if err != nil {
		return nil, fmt.Errorf("CA chain: %w", err)
	}
	return parseChainPEM(b)
}
