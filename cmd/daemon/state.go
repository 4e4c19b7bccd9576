package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/xlb-lb/xlb/cmd/config"
)

// persisted is the state file: the effective desired services (config file
// plus every change accepted through the API) and the hash of the config
// file they were derived from.
type persisted struct {
	ConfigHash string           `json:"config_hash"`
	Services   []config.Service `json:"services"`
	BGP        *config.BGP      `json:"bgp,omitempty"`
	// DNS holds each backend name's last good addresses, so a restart
	// serves them until the first answer (even while DNS is down).
	DNS []persistedName `json:"dns,omitempty"`
}

// persistedName is a backend name's last good set in the state file.
type persistedName struct {
	Name      string             `json:"name"`
	Family    string             `json:"family"`
	Addresses []string           `json:"addresses"`
	Leaving   []persistedLeaving `json:"leaving,omitempty"`
	Resolved  time.Time          `json:"resolved,omitzero"`
}

// persistedLeaving is an address gone from its name, draining.
type persistedLeaving struct {
	Address string    `json:"address"`
	Since   time.Time `json:"since"`
}

func hashBytes(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// loadState reads the state file; a missing file is not an error.
func loadState(path string) (*persisted, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", path, err)
	}
	var p persisted
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	for i := range p.Services {
		if err := p.Services[i].Normalize(); err != nil {
			return nil, fmt.Errorf("state %s: services[%d]: %w", path, i, err)
		}
	}
	if p.BGP != nil {
		c := config.Config{BGP: p.BGP}
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("state %s: %w", path, err)
		}
		p.BGP = c.BGP
	}
	return &p, nil
}

// saveState writes the state durably: temp file, fsync, rename, fsync dir.
// Only after it returns is a change acknowledged.
func saveState(path string, p *persisted) error {
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state directory %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	tmp := f.Name()
	// Gone after the rename; on an error path, a leftover temp file is
	// harmless and the error returned says what failed.
	defer func() { _ = os.Remove(tmp) }()
	if _, err := f.Write(append(data, '\n')); err != nil {
		return errors.Join(fmt.Errorf("write state %s: %w", tmp, err), f.Close())
	}
	if err := f.Sync(); err != nil {
		return errors.Join(fmt.Errorf("sync state %s: %w", tmp, err), f.Close())
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close state %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace state %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync state directory: %w", err)
	}
	if err := d.Sync(); err != nil {
		return errors.Join(fmt.Errorf("sync state directory %s: %w", dir, err), d.Close())
	}
	return d.Close()
}
