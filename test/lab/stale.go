package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"golang.org/x/sys/unix"
)

// labNSName matches the names of namespaces created by this package.
var labNSName = regexp.MustCompile(`^xlb[0-9a-f]{5}-[a-z0-9]+$`)

// RemoveStale removes lab namespaces left behind by runs that died without
// calling Close (a test binary killed by its timeout, a SIGKILLed demo).
// A namespace counts as stale when no thread of any process is inside it:
// a live topology always keeps a worker thread in each of its namespaces,
// so running labs, including those of other processes, are left alone.
// It returns the names it removed. Deleting the last reference destroys the
// namespace and the veth ends and bridge inside it.
func RemoveStale() ([]string, error) {
	ents, err := os.ReadDir(NetnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	candidates := map[string]string{} // "net:[inode]" -> name
	for _, e := range ents {
		if !labNSName.MatchString(e.Name()) {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(NetnsDir, e.Name()), &st); err != nil {
			continue
		}
		candidates[fmt.Sprintf("net:[%d]", st.Ino)] = e.Name()
	}
	if len(candidates) == 0 {
		return nil, nil
	}
	tasks, err := filepath.Glob("/proc/[0-9]*/task/[0-9]*/ns/net")
	if err != nil {
		return nil, err
	}
	for _, p := range tasks {
		if l, err := os.Readlink(p); err == nil {
			delete(candidates, l)
		}
	}
	var removed []string
	var errs []error
	for _, name := range candidates {
		if err := removeNamed(filepath.Join(NetnsDir, name)); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}
